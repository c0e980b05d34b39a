package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
)

func TestCheckSigners(t *testing.T) {
	k := newTestKeys(t, 3, 2)
	for _, tc := range []struct {
		name    string
		signers []signature.Signer
		want    string // "" for accepted
	}{
		{"Threshold", []signature.Signer{k.rollout[0], k.rollout[2]}, ""},
		{"AllThree", []signature.Signer{k.rollout[0], k.rollout[1], k.rollout[2]}, ""},
		{"None", nil, "no rollout key"},
		{"UnderThreshold", []signature.Signer{k.rollout[1]}, "1 distinct rollout keys given; trust file version 1 needs 2"},
		{"SameKeyTwice", []signature.Signer{k.rollout[1], k.rollout[1]}, "1 distinct rollout keys given"},
		{"ReleaseKey", []signature.Signer{k.rollout[0], k.release}, "is a release key of trust file version 1, not a rollout key"},
		{"RootKey", []signature.Signer{k.root, k.rollout[0]}, "is a root key of trust file version 1"},
		{"Stranger", []signature.Signer{k.rollout[0], k.stranger}, "is not in the rollout role of trust file version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSigners(context.Background(), k.trust, tc.signers)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
