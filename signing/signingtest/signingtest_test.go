package signingtest

import (
	"testing"

	"github.com/wasmfleet/wasmfleet/signing"
)

// TestTrust: what Trust makes parses, and names each role's key.
func TestTrust(t *testing.T) {
	root, release, rollout := NewSigner(t), NewSigner(t), NewSigner(t)
	tr, err := signing.ParseTrust(Trust(t, 3, root, release, rollout))
	if err != nil {
		t.Fatal(err)
	}
	if tr.File.Version != 3 {
		t.Errorf("version %d, want 3", tr.File.Version)
	}
	f := NewTrustFile(1, tr.File.Expires)
	for name, r := range map[string]struct {
		got  signing.Role
		want signing.Role
	}{
		"root":    {tr.File.Roles.Root, Role(t, f, 1, root)},
		"release": {tr.File.Roles.Release, Role(t, f, 1, release)},
		"rollout": {tr.File.Roles.Rollout, Role(t, f, 1, rollout)},
	} {
		if len(r.got.KeyIDs) != 1 || r.got.KeyIDs[0] != r.want.KeyIDs[0] || r.got.Threshold != 1 {
			t.Errorf("%s role %+v, want %+v", name, r.got, r.want)
		}
	}
}
