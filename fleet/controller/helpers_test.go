package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func testRef(version string) signing.ReleaseRef {
	return signing.ReleaseRef{Name: "threshold-alert", Version: version, SHA256: strings.Repeat("ab", 32), Size: 1000}
}

func newSigner(t testing.TB) signature.SignerVerifier {
	t.Helper()
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testKeys is a trust file with one root, one release and rollout keys (threshold given).
type testKeys struct {
	root, release, stranger signature.SignerVerifier
	rollout                 []signature.SignerVerifier
	trust                   *signing.Trust
}

func newTestKeys(t testing.TB, rollouts, threshold int) *testKeys {
	t.Helper()
	k := &testKeys{root: newSigner(t), release: newSigner(t), stranger: newSigner(t)}
	tf := &signing.TrustFile{Version: 1, Expires: time.Now().Add(24 * time.Hour), Keys: map[string]signing.TrustKey{}}
	add := func(r *signing.Role, s signature.Signer) {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		id, tk, err := signing.NewTrustKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		tf.Keys[id] = tk
		r.KeyIDs = append(r.KeyIDs, id)
	}
	add(&tf.Roles.Root, k.root)
	add(&tf.Roles.Release, k.release)
	for range rollouts {
		s := newSigner(t)
		k.rollout = append(k.rollout, s)
		add(&tf.Roles.Rollout, s)
	}
	tf.Roles.Root.Threshold, tf.Roles.Release.Threshold, tf.Roles.Rollout.Threshold = 1, 1, threshold
	env, err := signing.SignTrust(context.Background(), tf, k.root)
	if err != nil {
		t.Fatal(err)
	}
	if k.trust, err = signing.ParseTrust(env); err != nil {
		t.Fatal(err)
	}
	return k
}
