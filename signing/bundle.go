package signing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// BundleMediaTypePrefix starts the mediaType of a sigstore bundle (cosign v3's default
// output: `cosign attest-blob --bundle FILE`).
const BundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// IsBundle reports whether data looks like a sigstore bundle rather than a DSSE envelope.
func IsBundle(data []byte) bool {
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	return json.Unmarshal(data, &probe) == nil && strings.HasPrefix(probe.MediaType, BundleMediaTypePrefix)
}

// EnvelopeFromBundle takes the DSSE envelope out of a sigstore bundle, so that a release
// attested with cosign's default (bundle) output can be verified like any other. Only the
// envelope is used: keys are trusted through the trust file, so the bundle's verification
// material (key hint, certificates, transparency log entries, timestamps) is ignored.
func EnvelopeFromBundle(data []byte) ([]byte, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fail(ErrMalformed, fmt.Sprintf("bundle is %d bytes, more than %d", len(data), MaxEnvelopeSize))
	}
	var b struct {
		MediaType    string          `json:"mediaType"`
		DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, failWrap(ErrMalformed, "sigstore bundle", err)
	}
	if !strings.HasPrefix(b.MediaType, BundleMediaTypePrefix) {
		return nil, fail(ErrPayloadType, fmt.Sprintf("bundle has mediaType %q, want %s...", b.MediaType, BundleMediaTypePrefix))
	}
	if len(bytes.TrimSpace(b.DSSEEnvelope)) == 0 || string(b.DSSEEnvelope) == "null" {
		return nil, fail(ErrPayloadType, "bundle holds a message signature, not a DSSE envelope (sign with attest-blob, not sign-blob)")
	}
	env, err := ParseEnvelope(b.DSSEEnvelope)
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	return env.Marshal()
}
