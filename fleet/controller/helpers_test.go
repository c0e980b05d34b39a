package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

func testRef(version string) signing.ReleaseRef {
	return signing.ReleaseRef{Name: "threshold-alert", Version: version, SHA256: strings.Repeat("ab", 32), Size: 1000}
}

// testKeys is a trust file with one root, one release and rollout keys (threshold given).
type testKeys struct {
	root, release, stranger signature.SignerVerifier
	rollout                 []signature.SignerVerifier
	trust                   *signing.Trust
}

func newTestKeys(t testing.TB, rollouts, threshold int) *testKeys {
	t.Helper()
	k := &testKeys{root: signingtest.NewSigner(t), release: signingtest.NewSigner(t), stranger: signingtest.NewSigner(t)}
	rollout := make([]signature.Signer, rollouts)
	for i := range rollout {
		s := signingtest.NewSigner(t)
		k.rollout, rollout[i] = append(k.rollout, s), s
	}
	tf := signingtest.NewTrustFile(1, time.Now().Add(24*time.Hour))
	tf.Roles = signing.Roles{Root: signingtest.Role(t, tf, 1, k.root), Release: signingtest.Role(t, tf, 1, k.release),
		Rollout: signingtest.Role(t, tf, threshold, rollout...)}
	env := signingtest.Sign(t, tf, k.root)
	var err error
	if k.trust, err = signing.ParseTrust(env); err != nil {
		t.Fatal(err)
	}
	return k
}
