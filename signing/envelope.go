package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
)

// MaxEnvelopeSize bounds the envelopes this package reads (a release carries a manifest of
// at most modules.MaxManifestSize).
const MaxEnvelopeSize = 1 << 20

// MaxSignatures bounds the signatures of one envelope.
const MaxSignatures = 32

// Envelope is a decoded DSSE envelope.
type Envelope struct {
	PayloadType string
	Payload     []byte
	Signatures  []Signature
}

// Signature is one DSSE signature: KeyID is an unauthenticated hint (empty when the signer
// gave none, as cosign does), Sig the raw signature over PAE(PayloadType, Payload).
type Signature struct {
	KeyID string
	Sig   []byte
}

type wireEnvelope struct {
	PayloadType *string         `json:"payloadType"`
	Payload     *string         `json:"payload"`
	Signatures  []wireSignature `json:"signatures"`
}

type wireSignature struct {
	KeyID string  `json:"keyid"`
	Sig   *string `json:"sig"`
}

// ParseEnvelope decodes a DSSE envelope strictly: one JSON object with exactly the DSSE
// fields, base64 (standard or URL alphabet, padded) payload and signatures, at least one
// signature. It checks no signature.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fail(ErrMalformed, fmt.Sprintf("envelope is %d bytes, more than %d", len(data), MaxEnvelopeSize))
	}
	var w wireEnvelope
	if err := decodeStrict(data, &w); err != nil {
		return nil, failWrap(ErrMalformed, "envelope is not DSSE JSON", err)
	}
	switch {
	case w.PayloadType == nil || *w.PayloadType == "":
		return nil, fail(ErrMalformed, "envelope has no payloadType")
	case w.Payload == nil:
		return nil, fail(ErrMalformed, "envelope has no payload")
	case len(w.Signatures) == 0:
		return nil, fail(ErrMalformed, "envelope has no signatures")
	case len(w.Signatures) > MaxSignatures:
		return nil, fail(ErrMalformed, fmt.Sprintf("envelope has %d signatures, more than %d", len(w.Signatures), MaxSignatures))
	}
	payload, err := decodeB64(*w.Payload)
	if err != nil {
		return nil, failWrap(ErrMalformed, "envelope payload is not base64", err)
	}
	env := &Envelope{PayloadType: *w.PayloadType, Payload: payload}
	for i, s := range w.Signatures {
		if s.Sig == nil || *s.Sig == "" {
			return nil, fail(ErrMalformed, fmt.Sprintf("signature %d has no sig", i+1))
		}
		sig, err := decodeB64(*s.Sig)
		if err != nil {
			return nil, failWrap(ErrMalformed, fmt.Sprintf("signature %d is not base64", i+1), err)
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	return env, nil
}

// Marshal encodes the envelope as DSSE JSON (standard base64), with a final newline.
func (e *Envelope) Marshal() ([]byte, error) {
	pt := e.PayloadType
	p := base64.StdEncoding.EncodeToString(e.Payload)
	w := wireEnvelope{PayloadType: &pt, Payload: &p}
	for _, s := range e.Signatures {
		sig := base64.StdEncoding.EncodeToString(s.Sig)
		w.Signatures = append(w.Signatures, wireSignature{KeyID: s.KeyID, Sig: &sig})
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return append(b, '\n'), nil
}

func decodeB64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}
