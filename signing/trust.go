package signing

import (
	"bytes"
	"crypto"
	"fmt"
	"sort"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// TrustPayloadType is the DSSE payload type of a trust file.
const TrustPayloadType = "application/vnd.wasmfleet.trust+json"

// The roles of the trust file.
const (
	RoleRoot    = "root"
	RoleRelease = "release"
	RoleRollout = "rollout"
)

// TrustFile is the payload of trust/root.json: which keys hold which role, with what
// threshold, in which version, until when.
type TrustFile struct {
	// Version counts up by one with every rotation, from 1.
	Version uint64 `json:"version"`
	// Expires is when devices stop trusting this version for releases and desired state.
	Expires time.Time `json:"expires"`
	// Keys maps a key id (keys.ID) to the key.
	Keys map[string]TrustKey `json:"keys"`
	// Roles names the keys of each role and how many must sign.
	Roles Roles `json:"roles"`
}

// TrustKey is a public key in the trust file.
type TrustKey struct {
	Algorithm string `json:"algorithm"`  // keys.ECDSAP256 or keys.Ed25519
	PublicKey string `json:"public_key"` // PEM "PUBLIC KEY"
}

// Roles holds the three roles.
type Roles struct {
	Root    Role `json:"root"`
	Release Role `json:"release"`
	Rollout Role `json:"rollout"`
}

// Role is a set of key ids and how many of them must sign.
type Role struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// NewTrustKey describes pub for the trust file and returns its id.
func NewTrustKey(pub crypto.PublicKey) (string, TrustKey, error) {
	algo, err := keys.Algorithm(pub)
	if err != nil {
		return "", TrustKey{}, err
	}
	id, err := keys.ID(pub)
	if err != nil {
		return "", TrustKey{}, err
	}
	pemBytes, err := keys.MarshalPublic(pub)
	if err != nil {
		return "", TrustKey{}, err
	}
	return id, TrustKey{Algorithm: algo, PublicKey: string(pemBytes)}, nil
}

// Trust is a trust file whose root signatures have been checked. Hold the highest version
// verified; move on with Rotate.
type Trust struct {
	File     TrustFile
	envelope []byte
	payload  []byte
	roles    map[string]*role
	signedBy []string
}

// MaxRoleKeys bounds the keys of one role.
const MaxRoleKeys = 32

// ParseTrust decodes a trust-file envelope and checks that it is signed by its own root
// threshold. It does not check expiry (a device must still be able to rotate away from an
// expired trust file) and does not know about earlier versions: use it for the trust file
// a device was provisioned with, and Rotate for every later one.
func ParseTrust(envelope []byte) (*Trust, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, fmt.Errorf("trust file: %w", err)
	}
	t, err := decodeTrust(env)
	if err != nil {
		return nil, err
	}
	ids, err := t.roles[RoleRoot].verify(env, fmt.Sprintf("trust file version %d", t.File.Version))
	if err != nil {
		return nil, err
	}
	t.envelope = append([]byte(nil), envelope...)
	t.signedBy = ids
	return t, nil
}

func decodeTrust(env *Envelope) (*Trust, error) {
	if env.PayloadType != TrustPayloadType {
		return nil, fail(ErrPayloadType, fmt.Sprintf("trust file has payload type %q, want %q", env.PayloadType, TrustPayloadType))
	}
	var f TrustFile
	if err := decodeStrict(env.Payload, &f); err != nil {
		return nil, failWrap(ErrMalformed, "trust file payload", err)
	}
	t := &Trust{File: f, payload: env.Payload, roles: map[string]*role{}}
	if err := t.build(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate checks the rules of a trust file: version from 1, an expiry, every key's id is
// its own and its type is allowed, and each role names 1 to MaxRoleKeys distinct known
// keys with a threshold from 1 to their number.
func (f *TrustFile) Validate() error {
	return (&Trust{File: *f, roles: map[string]*role{}}).build()
}

// build checks t.File and sets up t.roles.
func (t *Trust) build() error {
	f := &t.File
	invalid := func(format string, args ...any) error {
		return fail(ErrInvalid, "trust file: "+fmt.Sprintf(format, args...))
	}
	if f.Version == 0 {
		return invalid("version must be 1 or more")
	}
	if f.Expires.IsZero() {
		return invalid("expires is required")
	}
	if len(f.Keys) > 3*MaxRoleKeys {
		return invalid("%d keys, more than the roles can hold (%d)", len(f.Keys), 3*MaxRoleKeys)
	}
	pubs := map[string]crypto.PublicKey{}
	verifiers := map[string]signature.Verifier{}
	for id, k := range f.Keys {
		pub, err := keys.ParsePublic([]byte(k.PublicKey))
		if err != nil {
			return failWrap(ErrMalformed, fmt.Sprintf("trust file: key %s", keys.Short(id)), err)
		}
		algo, _ := keys.Algorithm(pub)
		if algo != k.Algorithm {
			return invalid("key %s: algorithm says %q, the key is %s", keys.Short(id), k.Algorithm, algo)
		}
		real, err := keys.ID(pub)
		if err != nil {
			return failWrap(ErrInvalid, "trust file", err)
		}
		if real != id {
			return invalid("key listed as %s has id %s (the hex SHA-256 of its DER public key)", keys.Short(id), keys.Short(real))
		}
		v, err := keys.Verifier(pub)
		if err != nil {
			return failWrap(ErrInvalid, "trust file", err)
		}
		pubs[id], verifiers[id] = pub, v
	}
	for _, rs := range []struct {
		name string
		r    Role
	}{{RoleRoot, f.Roles.Root}, {RoleRelease, f.Roles.Release}, {RoleRollout, f.Roles.Rollout}} {
		n := len(rs.r.KeyIDs)
		if n == 0 || n > MaxRoleKeys {
			return invalid("role %s has %d keys (want 1 to %d)", rs.name, n, MaxRoleKeys)
		}
		if rs.r.Threshold < 1 || rs.r.Threshold > n {
			return invalid("role %s has threshold %d for %d keys (want 1 to %d)", rs.name, rs.r.Threshold, n, n)
		}
		ro := &role{name: rs.name, threshold: rs.r.Threshold, pubs: map[string]crypto.PublicKey{}, verifiers: map[string]signature.Verifier{}}
		for _, id := range rs.r.KeyIDs {
			if _, dup := ro.pubs[id]; dup {
				return invalid("role %s lists key %s twice (a key counts once toward a threshold)", rs.name, keys.Short(id))
			}
			pub, ok := pubs[id]
			if !ok {
				return invalid("role %s names key %s, which is not in keys", rs.name, keys.Short(id))
			}
			ro.pubs[id], ro.verifiers[id] = pub, verifiers[id]
			ro.ids = append(ro.ids, id)
		}
		sort.Strings(ro.ids)
		t.roles[rs.name] = ro
	}
	// Rollout keys are online: one that also held root or release would let whoever steals
	// the controller's key sign new code or a new trust file.
	for _, id := range t.roles[RoleRollout].ids {
		for _, other := range []string{RoleRoot, RoleRelease} {
			if _, ok := t.roles[other].pubs[id]; ok {
				return invalid("key %s holds both the rollout and the %s role; rollout keys are online and must hold no other role", keys.Short(id), other)
			}
		}
	}
	return nil
}

// Version is the trust file's version.
func (t *Trust) Version() uint64 { return t.File.Version }

// Envelope is the signed trust file as it was read, for storing.
func (t *Trust) Envelope() []byte { return append([]byte(nil), t.envelope...) }

// SignedBy lists the ids of the root keys whose signatures were counted.
func (t *Trust) SignedBy() []string { return append([]string(nil), t.signedBy...) }

// CheckExpiry returns ErrExpired when now is at or past the trust file's expiry.
func (t *Trust) CheckExpiry(now time.Time) error {
	if !now.Before(t.File.Expires) {
		return fail(ErrExpired, fmt.Sprintf("trust file version %d expired at %s; install a newer trust/root.json (wasmfleet trust rotate)",
			t.File.Version, t.File.Expires.UTC().Format(time.RFC3339)))
	}
	return nil
}

// KeyRole returns the roles id holds in t.
func (t *Trust) KeyRole(id string) []string {
	var out []string
	for _, name := range []string{RoleRoot, RoleRelease, RoleRollout} {
		if _, ok := t.roles[name].pubs[id]; ok {
			out = append(out, name)
		}
	}
	return out
}

// Rotate verifies next, the trust file that follows t, and returns it. next must have
// version t.Version()+1 (a skipped version is refused: fetch the ones between), be signed
// by the root threshold of t and by its own root threshold, and not be expired at now. The
// same version with the same content again returns t unchanged; an older or different one
// is ErrReplay.
func (t *Trust) Rotate(next []byte, now time.Time) (*Trust, error) {
	env, err := ParseEnvelope(next)
	if err != nil {
		return nil, fmt.Errorf("trust file: %w", err)
	}
	n, err := decodeTrust(env)
	if err != nil {
		return nil, err
	}
	switch v := n.File.Version; {
	case v == t.File.Version && bytes.Equal(env.Payload, t.payload):
		return t, nil
	case v <= t.File.Version:
		return nil, fail(ErrReplay, fmt.Sprintf("trust file version %d is not newer than version %d held", v, t.File.Version))
	case v != t.File.Version+1:
		return nil, fail(ErrRotation, fmt.Sprintf("trust file version %d skips from version %d; apply version %d first", v, t.File.Version, t.File.Version+1))
	}
	what := fmt.Sprintf("trust file version %d", n.File.Version)
	if _, err := t.roles[RoleRoot].verify(env, what); err != nil {
		return nil, failWrap(ErrRotation, fmt.Sprintf("%s lacks the root threshold of version %d", what, t.File.Version), err)
	}
	ids, err := n.roles[RoleRoot].verify(env, what)
	if err != nil {
		return nil, failWrap(ErrRotation, fmt.Sprintf("%s lacks its own root threshold", what), err)
	}
	if err := n.CheckExpiry(now); err != nil {
		return nil, err
	}
	n.envelope = append([]byte(nil), next...)
	n.signedBy = ids
	return n, nil
}
