package signing

import (
	"context"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func TestTrustRotation(t *testing.T) {
	fl := newFleet(t)
	ctx := context.Background()
	newRoot := newSigner(t, keys.Ed25519)
	rel := []signature.Signer{fl.release[0], fl.release[1], fl.release[2]}
	v2 := trustFile(t, 2, t0.Add(400*24*time.Hour), []signature.Signer{newRoot}, 1, rel, 2, []signature.Signer{fl.rollout}, 1)
	v3 := trustFile(t, 3, t0.Add(400*24*time.Hour), []signature.Signer{newRoot}, 1, rel, 2, []signature.Signer{fl.rollout}, 1)

	sign := func(f *TrustFile, ss ...signature.Signer) []byte {
		b, err := SignTrust(ctx, f, ss...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("both thresholds", func(t *testing.T) {
		next, err := fl.trust.Rotate(sign(v2, fl.root, newRoot), t0)
		if err != nil {
			t.Fatal(err)
		}
		if next.Version() != 2 || len(next.SignedBy()) != 1 || next.SignedBy()[0] != idOf(t, newRoot) {
			t.Fatalf("rotated to %d signed by %v", next.Version(), next.SignedBy())
		}
		// And on to 3, signed by version 2's root only (the same key holds both).
		if _, err := next.Rotate(sign(v3, newRoot), t0); err != nil {
			t.Fatalf("2 -> 3: %v", err)
		}
		// The same version again is a no-op; an older one is a replay.
		if same, err := next.Rotate(next.Envelope(), t0); err != nil || same != next {
			t.Fatalf("same version again: %v", err)
		}
		_, err = next.Rotate(fl.trustEnv, t0)
		expectKind(t, err, ErrReplay, "not newer")
	})
	t.Run("lacks the old threshold", func(t *testing.T) {
		_, err := fl.trust.Rotate(sign(v2, newRoot), t0)
		expectKind(t, err, ErrRotation, "lacks the root threshold of version 1")
	})
	t.Run("lacks the new threshold", func(t *testing.T) {
		_, err := fl.trust.Rotate(sign(v2, fl.root), t0)
		expectKind(t, err, ErrRotation, "lacks its own root threshold")
	})
	t.Run("skips a version", func(t *testing.T) {
		_, err := fl.trust.Rotate(sign(v3, fl.root, newRoot), t0)
		expectKind(t, err, ErrRotation, "skips from version 1", "apply version 2 first")
	})
	t.Run("expired next", func(t *testing.T) {
		old := trustFile(t, 2, t0.Add(-time.Hour), []signature.Signer{newRoot}, 1, rel, 2, []signature.Signer{fl.rollout}, 1)
		_, err := fl.trust.Rotate(sign(old, fl.root, newRoot), t0)
		expectKind(t, err, ErrExpired)
	})
	t.Run("an expired trust file can still rotate", func(t *testing.T) {
		later := t0.Add(380 * 24 * time.Hour) // version 1 expired, version 2 not
		if err := fl.trust.CheckExpiry(later); err == nil {
			t.Fatal("version 1 should be expired")
		}
		if _, err := fl.trust.Rotate(sign(v2, fl.root, newRoot), later); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("2-of-3 root", func(t *testing.T) {
		r := []signature.Signer{newSigner(t, keys.ECDSAP256), newSigner(t, keys.ECDSAP256), newSigner(t, keys.ECDSAP256)}
		f := trustFile(t, 1, t0.Add(time.Hour), r, 2, rel, 2, []signature.Signer{fl.rollout}, 1)
		if _, err := ParseTrust(sign(f, r[0], r[2])); err != nil {
			t.Fatal(err)
		}
		_, err := ParseTrust(sign(f, r[1]))
		expectKind(t, err, ErrThreshold)
		// Rotation to a new set: needs 2 of the old three and the new key.
		g := trustFile(t, 2, t0.Add(time.Hour), []signature.Signer{newRoot}, 1, rel, 2, []signature.Signer{fl.rollout}, 1)
		cur, _ := ParseTrust(sign(f, r[0], r[1]))
		_, err = cur.Rotate(sign(g, r[0], newRoot), t0)
		expectKind(t, err, ErrRotation)
		if !isKind(err, ErrThreshold) {
			t.Errorf("rotation error %q does not carry the threshold cause", err)
		}
		if _, err := cur.Rotate(sign(g, r[0], r[1], newRoot), t0); err != nil {
			t.Fatal(err)
		}
	})
}

func isKind(err error, k *Kind) bool {
	for e, ok := err.(*Error); ok; e, ok = e.Err.(*Error) {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func TestTrustFileRules(t *testing.T) {
	fl := newFleet(t)
	ctx := context.Background()
	base := func() *TrustFile {
		return trustFile(t, 1, t0.Add(time.Hour), []signature.Signer{fl.root}, 1,
			[]signature.Signer{fl.release[0], fl.release[1]}, 2, []signature.Signer{fl.rollout}, 1)
	}
	for _, c := range []struct {
		name   string
		mutate func(f *TrustFile)
		words  string
	}{
		{"version 0", func(f *TrustFile) { f.Version = 0 }, "version"},
		{"no expiry", func(f *TrustFile) { f.Expires = time.Time{} }, "expires"},
		{"threshold above keys", func(f *TrustFile) { f.Roles.Release.Threshold = 3 }, "threshold 3 for 2 keys"},
		{"threshold 0", func(f *TrustFile) { f.Roles.Rollout.Threshold = 0 }, "threshold 0"},
		{"same key twice in a role", func(f *TrustFile) {
			f.Roles.Release.KeyIDs[1] = f.Roles.Release.KeyIDs[0]
		}, "twice"},
		{"key under a false id", func(f *TrustFile) {
			id := f.Roles.Rollout.KeyIDs[0]
			k := f.Keys[id]
			fake := "00" + id[2:]
			f.Keys[fake] = k
			f.Roles.Rollout.KeyIDs[0] = fake
		}, "has id"},
		{"unknown key id in role", func(f *TrustFile) { f.Roles.Root.KeyIDs[0] = idOf(t, fl.stranger) }, "not in keys"},
		{"no rollout role", func(f *TrustFile) { f.Roles.Rollout = Role{} }, "rollout has 0 keys"},
		{"rollout key is a release key", func(f *TrustFile) { f.Roles.Rollout.KeyIDs = append(f.Roles.Rollout.KeyIDs, f.Roles.Release.KeyIDs[0]) }, "must hold no other role"},
		{"rollout key is a root key", func(f *TrustFile) { f.Roles.Rollout.KeyIDs = f.Roles.Root.KeyIDs }, "must hold no other role"},
		{"algorithm mislabelled", func(f *TrustFile) {
			id := f.Roles.Root.KeyIDs[0]
			k := f.Keys[id]
			k.Algorithm = keys.Ed25519
			f.Keys[id] = k
		}, "algorithm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.mutate(f)
			err := f.Validate()
			expectKind(t, err, ErrInvalid, c.words)
			_, err = SignTrust(ctx, f, fl.root)
			expectKind(t, err, ErrInvalid)
		})
	}
	// A trust file with a wrong payload type.
	env, _ := Sign(ctx, ReleasePayloadType, []byte("{}"), fl.root)
	_, err := ParseTrust(env)
	expectKind(t, err, ErrPayloadType)
}
