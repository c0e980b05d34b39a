package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// Sign makes a DSSE envelope of payload signed by each signer (key files through
// keys.Signer, KMS keys through signing/kms), each signature carrying its key id.
func Sign(ctx context.Context, payloadType string, payload []byte, signers ...signature.Signer) ([]byte, error) {
	env := &Envelope{PayloadType: payloadType, Payload: payload}
	if err := env.addSignatures(ctx, signers); err != nil {
		return nil, err
	}
	return env.Marshal()
}

// AddSignatures countersigns an existing envelope (offline, one key holder after another).
// A key that already signed is not added twice.
func AddSignatures(ctx context.Context, envelope []byte, signers ...signature.Signer) ([]byte, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	if err := env.addSignatures(ctx, signers); err != nil {
		return nil, err
	}
	return env.Marshal()
}

func (e *Envelope) addSignatures(ctx context.Context, signers []signature.Signer) error {
	if len(signers) == 0 {
		return fmt.Errorf("sign: no key given")
	}
	for _, s := range signers {
		pub, err := s.PublicKey(options.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("sign: public key of signer: %w", err)
		}
		id, err := keys.ID(pub)
		if err != nil {
			return err
		}
		if e.signedBy(id) {
			continue
		}
		// sigstore's DSSE signer computes PAE and signs it; we take its one signature and
		// add our key id hint.
		out, err := sigdsse.WrapSigner(s, e.PayloadType).SignMessage(bytes.NewReader(e.Payload), options.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("sign with key %s: %w", keys.Short(id), err)
		}
		one, err := ParseEnvelope(out)
		if err != nil || len(one.Signatures) != 1 {
			return fmt.Errorf("sign with key %s: unexpected DSSE output: %v", keys.Short(id), err)
		}
		e.Signatures = append(e.Signatures, Signature{KeyID: id, Sig: one.Signatures[0].Sig})
	}
	return nil
}

func (e *Envelope) signedBy(id string) bool {
	for _, s := range e.Signatures {
		if s.KeyID == id {
			return true
		}
	}
	return false
}

// SignRelease hashes the module, builds the release statement for m and signs it.
func SignRelease(ctx context.Context, m *modules.Manifest, wasm io.Reader, signers ...signature.Signer) ([]byte, error) {
	digest, size, err := HashModule(wasm)
	if err != nil {
		return nil, err
	}
	st, err := ReleaseStatement(m, digest, size)
	if err != nil {
		return nil, err
	}
	return Sign(ctx, ReleasePayloadType, st, signers...)
}

// SignDesired validates d and signs it (with rollout keys).
func SignDesired(ctx context.Context, d *Desired, signers ...signature.Signer) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode desired state: %w", err)
	}
	return Sign(ctx, DesiredPayloadType, b, signers...)
}

// SignTrust validates f and signs it (with root keys: those of f, and for a rotation also
// those of the version before).
func SignTrust(ctx context.Context, f *TrustFile, signers ...signature.Signer) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode trust file: %w", err)
	}
	return Sign(ctx, TrustPayloadType, b, signers...)
}

// InspectRelease decodes a release envelope's statement without checking any signature,
// for tools that countersign or show a release. Never trust its result.
func InspectRelease(envelope []byte) (*Release, *Envelope, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, nil, err
	}
	if env.PayloadType != ReleasePayloadType {
		return nil, nil, fail(ErrPayloadType, fmt.Sprintf("release has payload type %q, want %q", env.PayloadType, ReleasePayloadType))
	}
	r, err := parseRelease(env.Payload)
	if err != nil {
		return nil, nil, err
	}
	return r, env, nil
}

// InspectTrust decodes a trust file without checking its signatures (for `trust show` of a
// file that does not verify, and for rotation tools). Never trust its result.
func InspectTrust(envelope []byte) (*Trust, *Envelope, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, nil, fmt.Errorf("trust file: %w", err)
	}
	t, err := decodeTrust(env)
	if err != nil {
		return nil, nil, err
	}
	return t, env, nil
}
