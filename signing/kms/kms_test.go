package kms

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func TestIsRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"awskms:///arn:aws:kms:eu-west-1:1:key/abc":                                   true,
		"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1": true,
		"azurekms://vault.vault.azure.net/key":                                        true,
		"hashivault://release":                                                        true,
		"release.key":                                                                 false,
		"fakekms://x":                                                                 false, // test-only provider: not accepted
		"plugin://x":                                                                  false, // never run sigstore's CLI plugins
	} {
		if got := IsRef(ref); got != want {
			t.Errorf("IsRef(%q) = %v", ref, got)
		}
	}
	if _, err := Signer(context.Background(), "release.key"); err == nil {
		t.Error("Signer accepted a file name")
	}
}

// TestKMSSigner signs a release with a KMS signer (sigstore's fake provider holding a known
// key) and verifies it as the agent would: the KMS path produces ordinary releases.
func TestKMSSigner(t *testing.T) {
	Schemes = append(Schemes, fake.ReferenceScheme)
	defer func() { Schemes = Schemes[:len(Schemes)-1] }()

	relPriv, _ := keys.Generate(keys.ECDSAP256)
	ctx := context.WithValue(context.Background(), fake.KmsCtxKey{}, relPriv)
	sv, err := Signer(ctx, "fakekms://release")
	if err != nil {
		t.Fatal(err)
	}
	rootPriv, _ := keys.Generate(keys.Ed25519)
	root, _ := keys.Signer(rootPriv)
	f := &signing.TrustFile{Version: 1, Expires: time.Now().Add(time.Hour), Keys: map[string]signing.TrustKey{}}
	rootID, rootKey, _ := signing.NewTrustKey(rootPriv.Public())
	relID, relKey, _ := signing.NewTrustKey(relPriv.Public())
	rollPriv, _ := keys.Generate(keys.ECDSAP256)
	rollID, rollKey, _ := signing.NewTrustKey(rollPriv.Public())
	f.Keys[rootID], f.Keys[relID], f.Keys[rollID] = rootKey, relKey, rollKey
	f.Roles = signing.Roles{
		Root:    signing.Role{KeyIDs: []string{rootID}, Threshold: 1},
		Release: signing.Role{KeyIDs: []string{relID}, Threshold: 1},
		Rollout: signing.Role{KeyIDs: []string{rollID}, Threshold: 1},
	}
	trustEnv, err := signing.SignTrust(ctx, f, root)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := signing.ParseTrust(trustEnv)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := modules.Parse([]byte("name: kms-signed\nversion: 1.0.0\nabi: handler/v1\n"))
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	env, err := signing.SignRelease(ctx, m, bytes.NewReader(wasm), sv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := (&signing.Verifier{Trust: tr}).VerifyReleaseModule(env, bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.SignedBy) != 1 || r.SignedBy[0] != relID {
		t.Fatalf("signed by %v, want the KMS key %s", r.SignedBy, relID)
	}
}
