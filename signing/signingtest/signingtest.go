// Package signingtest makes keys and trust files for the tests of code that verifies what
// package signing signs: the agent, its store, the controller, the rollout engine, the
// publisher and the test fleets. Every function fails the test (t.Fatal) on error, so call
// them from the test's goroutine. Nothing but tests imports it.
package signingtest

import (
	"context"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// NewSigner returns a new ECDSA P-256 key.
func NewSigner(t testing.TB) signature.SignerVerifier {
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

// NewTrustFile returns an empty, unsigned trust file of version v that expires at expires.
// Fill its roles with Role.
func NewTrustFile(v uint64, expires time.Time) *signing.TrustFile {
	return &signing.TrustFile{Version: v, Expires: expires, Keys: map[string]signing.TrustKey{}}
}

// Role adds the public keys of signers to f and returns the role they make, with threshold.
func Role(t testing.TB, f *signing.TrustFile, threshold int, signers ...signature.Signer) signing.Role {
	t.Helper()
	r := signing.Role{Threshold: threshold}
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		id, k, err := signing.NewTrustKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		f.Keys[id] = k
		r.KeyIDs = append(r.KeyIDs, id)
	}
	return r
}

// Sign returns f's envelope, signed by signers.
func Sign(t testing.TB, f *signing.TrustFile, signers ...signature.Signer) []byte {
	t.Helper()
	env, err := signing.SignTrust(context.Background(), f, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Trust returns the envelope of a trust file of version v, valid for a year, with one key
// (threshold 1) for each role, signed by root.
func Trust(t testing.TB, v uint64, root, release, rollout signature.Signer) []byte {
	t.Helper()
	f := NewTrustFile(v, time.Now().Add(365*24*time.Hour))
	f.Roles = signing.Roles{Root: Role(t, f, 1, root), Release: Role(t, f, 1, release), Rollout: Role(t, f, 1, rollout)}
	return Sign(t, f, root)
}
