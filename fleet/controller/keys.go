package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// CheckSigners makes sure the controller holds rollout keys and nothing else: every signer
// is a key of the trust file's rollout role (so never a release or root key: the trust
// file keeps the roles apart), and together they meet the role's threshold. It then signs
// a probe desired state and verifies it as an agent would, so that a controller that could
// not be obeyed does not start.
func CheckSigners(ctx context.Context, trust *signing.Trust, signers []signature.Signer) error {
	if len(signers) == 0 {
		return fmt.Errorf("no rollout key")
	}
	var ids []string
	for _, s := range signers {
		pub, err := s.PublicKey(options.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("rollout key: %w", err)
		}
		id, err := keys.ID(pub)
		if err != nil {
			return fmt.Errorf("rollout key: %w", err)
		}
		roles := trust.KeyRole(id)
		if !slices.Contains(roles, signing.RoleRollout) {
			if len(roles) > 0 {
				return fmt.Errorf("key %s is a %s key of trust file version %d, not a rollout key: the controller holds rollout keys only",
					keys.Short(id), roles[0], trust.Version())
			}
			return fmt.Errorf("key %s is not in the rollout role of trust file version %d", keys.Short(id), trust.Version())
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if need := trust.File.Roles.Rollout.Threshold; len(ids) < need {
		return fmt.Errorf("%d distinct rollout keys given; trust file version %d needs %d to sign a desired state", len(ids), trust.Version(), need)
	}
	probe := &signing.Desired{Target: signing.Target{Group: "probe"}, Sequence: 1, Expires: time.Now().Add(time.Hour)}
	env, err := signing.SignDesired(ctx, probe, signers...)
	if err != nil {
		return fmt.Errorf("sign with the rollout keys: %w", err)
	}
	if _, err := (&signing.Verifier{Trust: trust}).VerifyDesired(env, probe.Target, 0); err != nil {
		return fmt.Errorf("a desired state signed with these keys would be refused: %w", err)
	}
	return nil
}
