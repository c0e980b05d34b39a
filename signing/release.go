package signing

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"

	"github.com/wasmfleet/wasmfleet/modules"
)

// Release envelope and statement types.
const (
	ReleasePayloadType   = "application/vnd.in-toto+json"
	ReleasePredicateType = "https://wasmfleet.dev/release/v1"
	StatementTypeV1      = "https://in-toto.io/Statement/v1"
	// StatementTypeV01 is what cosign attest-blob writes for a custom predicate type.
	StatementTypeV01 = "https://in-toto.io/Statement/v0.1"
)

// MaxModuleSize bounds the size a release may sign for a module.
const MaxModuleSize = 256 << 20

// Statement is an in-toto Statement.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is an in-toto subject: a name and its digests.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// ReleasePredicate is the predicate of a release statement.
type ReleasePredicate struct {
	Manifest *modules.Manifest `json:"manifest"`
	Size     uint64            `json:"size"`
	ABI      string            `json:"abi"`
}

// Release is a release whose signatures have been checked.
type Release struct {
	Manifest *modules.Manifest
	Version  modules.Version
	SHA256   string // lowercase hex
	Size     uint64
	// Subject is the statement's subject name (the module name, or the file name when cosign
	// made it). Informational.
	Subject string
	// SignedBy lists the ids of the release keys whose signatures were counted.
	SignedBy []string
	// Threshold is the release role's threshold it met, of RoleKeys keys.
	Threshold, RoleKeys int
	// TrustVersion is the trust file version it was checked against.
	TrustVersion uint64
}

// Ref is the release as a desired state names it.
func (r *Release) Ref() ReleaseRef {
	return ReleaseRef{Name: r.Manifest.Name, Version: r.Manifest.Version, SHA256: r.SHA256, Size: r.Size}
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ReleaseStatement builds the unsigned release statement for m and a module of the given
// digest (lowercase hex SHA-256) and size.
func ReleaseStatement(m *modules.Manifest, sha256Hex string, size uint64) ([]byte, error) {
	pred, err := ReleasePredicateJSON(m, size)
	if err != nil {
		return nil, err
	}
	if !sha256RE.MatchString(sha256Hex) {
		return nil, fmt.Errorf("release statement: %q is not a hex SHA-256", sha256Hex)
	}
	st := Statement{
		Type:          StatementTypeV1,
		Subject:       []Subject{{Name: m.Name, Digest: map[string]string{"sha256": sha256Hex}}},
		PredicateType: ReleasePredicateType,
		Predicate:     pred,
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode release statement: %w", err)
	}
	return b, nil
}

// ReleasePredicateJSON is the predicate alone, as `cosign attest-blob --predicate` takes it.
func ReleasePredicateJSON(m *modules.Manifest, size uint64) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if size == 0 || size > MaxModuleSize {
		return nil, fmt.Errorf("release predicate: module size %d is out of range (1 to %d)", size, MaxModuleSize)
	}
	mj, err := m.CanonicalJSON()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(struct {
		Manifest json.RawMessage `json:"manifest"`
		Size     uint64          `json:"size"`
		ABI      string          `json:"abi"`
	}{mj, size, m.ABI})
	if err != nil {
		return nil, fmt.Errorf("encode release predicate: %w", err)
	}
	return b, nil
}

// HashModule reads a whole module and returns its SHA-256 (hex) and size.
func HashModule(r io.Reader) (string, uint64, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, MaxModuleSize+1))
	if err != nil {
		return "", 0, fmt.Errorf("hash module: %w", err)
	}
	if n > MaxModuleSize {
		return "", 0, fmt.Errorf("hash module: larger than %d bytes", MaxModuleSize)
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(n), nil
}

// parseRelease decodes and checks a release statement (already verified).
func parseRelease(payload []byte) (*Release, error) {
	var st Statement
	if err := decodeStrict(payload, &st); err != nil {
		return nil, failWrap(ErrMalformed, "release statement", err)
	}
	if st.Type != StatementTypeV1 && st.Type != StatementTypeV01 {
		return nil, fail(ErrPayloadType, fmt.Sprintf("release statement has _type %q, want %q", st.Type, StatementTypeV1))
	}
	if st.PredicateType != ReleasePredicateType {
		return nil, fail(ErrPayloadType, fmt.Sprintf("release statement has predicateType %q, want %q", st.PredicateType, ReleasePredicateType))
	}
	if len(st.Subject) != 1 {
		return nil, fail(ErrInvalid, fmt.Sprintf("release statement has %d subjects, want 1 (the module)", len(st.Subject)))
	}
	digest := st.Subject[0].Digest["sha256"]
	if !sha256RE.MatchString(digest) {
		return nil, fail(ErrInvalid, fmt.Sprintf("release subject has no hex digest.sha256 (got %q)", digest))
	}
	var p ReleasePredicate
	dec := json.NewDecoder(bytes.NewReader(st.Predicate))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, failWrap(ErrMalformed, "release predicate", err)
	}
	if p.Manifest == nil {
		return nil, fail(ErrInvalid, "release predicate has no manifest")
	}
	if err := p.Manifest.Validate(); err != nil {
		return nil, failWrap(ErrInvalid, "release manifest", err)
	}
	if p.ABI != p.Manifest.ABI {
		return nil, fail(ErrInvalid, fmt.Sprintf("release predicate says abi %q, its manifest %q", p.ABI, p.Manifest.ABI))
	}
	if p.Size == 0 || p.Size > MaxModuleSize {
		return nil, fail(ErrInvalid, fmt.Sprintf("release size %d is out of range (1 to %d)", p.Size, MaxModuleSize))
	}
	v, err := modules.ParseVersion(p.Manifest.Version)
	if err != nil {
		return nil, failWrap(ErrInvalid, "release manifest", err)
	}
	return &Release{Manifest: p.Manifest, Version: v, SHA256: digest, Size: p.Size, Subject: st.Subject[0].Name}, nil
}

// VerifyModule streams a module through SHA-256 and checks it against the release: more
// bytes than the signed size is ErrTooLarge (reading stops one byte past the size), fewer
// bytes or another digest is ErrDigest. To keep the bytes, pass an io.TeeReader into a
// *.unverified file and rename it only when this returns nil.
func (r *Release) VerifyModule(wasm io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(wasm, int64(r.Size)+1))
	if err != nil {
		return fmt.Errorf("read module %s %s: %w", r.Manifest.Name, r.Manifest.Version, err)
	}
	if uint64(n) > r.Size {
		return fail(ErrTooLarge, fmt.Sprintf("module %s %s has more than the %d bytes its release signed; stopped reading",
			r.Manifest.Name, r.Manifest.Version, r.Size))
	}
	if uint64(n) != r.Size {
		return fail(ErrDigest, fmt.Sprintf("module %s %s is %d bytes, its release signed %d: truncated, or not this release's module",
			r.Manifest.Name, r.Manifest.Version, n, r.Size))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
		return fail(ErrDigest, fmt.Sprintf("module has sha256 %s, release %s %s signed %s: tampered, or another module's file",
			got[:16], r.Manifest.Name, r.Manifest.Version, r.SHA256[:16]))
	}
	return nil
}
