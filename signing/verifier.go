package signing

import (
	"fmt"
	"io"
	"time"
)

// Verifier checks releases and desired states against a trust file. The zero Now is
// time.Now. A Verifier is safe for concurrent use if Trust is not changed meanwhile.
type Verifier struct {
	// Trust is the highest trust file version verified (ParseTrust, then Rotate).
	Trust *Trust
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
}

func (v *Verifier) check() error {
	if v.Trust == nil {
		return fmt.Errorf("verifier has no trust file")
	}
	return v.Trust.CheckExpiry(v.now())
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// VerifyRelease checks a release envelope: the trust file is not expired, the envelope is
// an in-toto DSSE envelope signed by the release threshold, and its statement and manifest
// are valid. The module itself is checked with Release.VerifyModule (or use
// VerifyReleaseModule).
func (v *Verifier) VerifyRelease(envelope []byte) (*Release, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if env.PayloadType != ReleasePayloadType {
		return nil, fail(ErrPayloadType, fmt.Sprintf("release has payload type %q, want %q", env.PayloadType, ReleasePayloadType))
	}
	ro := v.Trust.roles[RoleRelease]
	ids, err := ro.verify(env, "release")
	if err != nil {
		return nil, err
	}
	r, err := parseRelease(env.Payload)
	if err != nil {
		return nil, err
	}
	r.SignedBy, r.Threshold, r.RoleKeys, r.TrustVersion = ids, ro.threshold, len(ro.ids), v.Trust.Version()
	return r, nil
}

// VerifyReleaseModule is VerifyRelease and then Release.VerifyModule on wasm.
func (v *Verifier) VerifyReleaseModule(envelope []byte, wasm io.Reader) (*Release, error) {
	r, err := v.VerifyRelease(envelope)
	if err != nil {
		return nil, err
	}
	if err := r.VerifyModule(wasm); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyDesired checks a desired-state envelope for want (the group or device the agent
// read it for): the trust file is not expired, it is signed by the rollout threshold, its
// target is want, its sequence is above lastApplied (0 when none was applied) and it is not
// expired.
func (v *Verifier) VerifyDesired(envelope []byte, want Target, lastApplied uint64) (*Desired, error) {
	now := v.now()
	if err := v.check(); err != nil {
		return nil, err
	}
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, fmt.Errorf("desired state: %w", err)
	}
	if env.PayloadType != DesiredPayloadType {
		return nil, fail(ErrPayloadType, fmt.Sprintf("desired state has payload type %q, want %q", env.PayloadType, DesiredPayloadType))
	}
	if _, err := v.Trust.roles[RoleRollout].verify(env, "desired state"); err != nil {
		return nil, err
	}
	d, err := parseDesired(env.Payload)
	if err != nil {
		return nil, err
	}
	if d.Target != want {
		return nil, fail(ErrWrongTarget, fmt.Sprintf("desired state is for %s, read for %s", d.Target, want))
	}
	if d.Sequence <= lastApplied {
		return nil, fail(ErrReplay, fmt.Sprintf("desired state for %s has sequence %d, not above %d already applied (replayed or stale)",
			d.Target, d.Sequence, lastApplied))
	}
	if !now.Before(d.Expires) {
		return nil, fail(ErrExpired, fmt.Sprintf("desired state for %s (sequence %d) expired at %s; the controller must re-sign it",
			d.Target, d.Sequence, d.Expires.UTC().Format(time.RFC3339)))
	}
	return d, nil
}
