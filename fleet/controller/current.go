package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// ErrNoDesired: the group has no desired state (no retained message, no rollout).
var ErrNoDesired = errors.New("no desired state")

// CurrentDesired reads the retained desired state of group from the broker (c connected)
// and verifies it with v, as the group's agents would. It waits up to wait for the
// retained message, which a broker sends at once after the SUBACK; none by then is
// ErrNoDesired.
func CurrentDesired(ctx context.Context, c mqtt.Client, topics report.Topics, group string, v *signing.Verifier, wait time.Duration) (*signing.Desired, error) {
	topic := topics.GroupDesired(group)
	got := make(chan []byte, 1)
	tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		if !m.Retained() {
			return
		}
		select {
		case got <- m.Payload():
		default:
		}
	})
	defer func() { c.Unsubscribe(topic).WaitTimeout(time.Second) }()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok && st.Result()[topic] == 0x80 {
		return nil, fmt.Errorf("subscribe %s: %w", topic, ErrSubscribeRefused)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case b := <-got:
		if len(b) == 0 {
			return nil, fmt.Errorf("group %s: %w (its retained message is empty)", group, ErrNoDesired)
		}
		d, err := v.VerifyDesired(b, signing.Target{Group: group}, 0)
		if err != nil {
			return nil, fmt.Errorf("the retained desired state of group %s: %w", group, err)
		}
		return d, nil
	case <-t.C:
		return nil, fmt.Errorf("group %s: %w on %s", group, ErrNoDesired, topic)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// LatestDesired is the desired state the group's latest rollout in the bucket signed (the
// one running, else the one with the highest sequence), verified with v: what the
// controller last published for the group, read without a broker. None is ErrNoDesired.
func LatestDesired(ctx context.Context, s rollout.Store, group string, v *signing.Verifier) (*signing.Desired, *rollout.Rollout, error) {
	c, err := rollout.New(rollout.Options{Store: s})
	if err != nil {
		return nil, nil, err
	}
	all, err := c.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	var latest *rollout.Rollout
	for _, r := range all {
		if r.Group != group || r.Desired == nil {
			continue
		}
		if latest == nil || later(r, latest) {
			latest = r
		}
	}
	if latest == nil {
		return nil, nil, fmt.Errorf("group %s: %w in s3 (no rollout under %s has signed one)", group, ErrNoDesired, objects.RolloutsPrefix)
	}
	d, err := v.VerifyDesired(latest.Desired, signing.Target{Group: group}, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("the desired state of rollout %s: %w", latest.ID, err)
	}
	return d, latest, nil
}

// later is rollout's order of a group's rollouts: a running one first, then by sequence.
func later(a, b *rollout.Rollout) bool {
	if a.State.Final() != b.State.Final() {
		return !a.State.Final()
	}
	if a.Sequence != b.Sequence {
		return a.Sequence > b.Sequence
	}
	return a.Created.After(b.Created)
}
