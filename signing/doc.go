// Package signing is wasmfleet's trust model: the formats of releases, desired-state
// documents and the trust file, how they are signed, and the checks an agent runs before it
// trusts any of them. The agent links it; it holds no KMS code (see signing/kms) and never
// prints.
//
// # Formats
//
// All three documents are DSSE envelopes (payloadType, base64 payload, signatures with a
// keyid hint and a base64 signature over DSSE's PAE):
//
//   - Release: payload type application/vnd.in-toto+json, an in-toto Statement (v1; v0.1 as
//     cosign writes it is accepted) with one subject (the module: name and digest.sha256)
//     and predicate type https://wasmfleet.dev/release/v1, whose predicate is
//     {"manifest": <the manifest as modules.Manifest.CanonicalJSON writes it>, "size":
//     <bytes of the wasm>, "abi": <the manifest's abi>}. It is signed by the release role.
//     This is exactly what `cosign attest-blob --type https://wasmfleet.dev/release/v1
//     --predicate P module.wasm` makes, so releases can be made and checked with cosign.
//     The subject name is informational (cosign writes the file name); the digest, the
//     size and the manifest are what bind.
//   - Desired state: payload type application/vnd.wasmfleet.desired+json, a Desired,
//     signed by the rollout role.
//   - Trust file (trust/root.json): payload type application/vnd.wasmfleet.trust+json, a
//     TrustFile, signed by its own root role; version N+1 must also be signed by the root
//     threshold of version N.
//
// # Key ids and thresholds
//
// Keys are named by keys.ID (hex SHA-256 of the DER SubjectPublicKeyInfo). A threshold
// counts distinct keys of the role whose signature verifies; a key that signs twice counts
// once. The counting is done by go-securesystemslib's DSSE multi-verifier through sigstore's
// dsse.VerifierAdapter, with our key ids on the adapters (see RATIONALE.md for why not
// dsse.WrapMultiVerifierWithOpts). When it refuses, this package works out why, so that
// each failure has its own Kind.
//
// # Errors
//
// Every refusal is an *Error whose Kind (ErrMalformed, ErrThreshold, ErrReplay, ...) can be
// tested with errors.Is, and whose message says what to do about it.
//
// # Time
//
// Expiry is checked against Verifier.Now (time.Now when nil), so tests use a fixed clock.
package signing
