package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// Feed feeds a rollout.Tracker with what devices publish: their retained statuses
// (Topics.AllStatus) and their update events (Topics.AllEvents). Everything on the broker
// may come from anyone with publish rights, so a message that does not parse, or that
// speaks for another device than its topic names, is counted and dropped.
type Feed struct {
	topics  report.Topics
	tracker *rollout.Tracker
	// fleet, when set, also gets every message the tracker accepted (Server sets it).
	fleet *Fleet

	statuses, events, malformed atomic.Uint64
	last                        atomic.Int64 // unix nanos of the last status received

	mu            sync.Mutex
	lastMalformed error
}

// NewFeed returns a Feed for the topics under topics' prefix.
func NewFeed(topics report.Topics, tracker *rollout.Tracker) *Feed {
	return &Feed{topics: topics, tracker: tracker}
}

// Handle takes one message from the broker.
func (f *Feed) Handle(topic string, payload []byte) error {
	id, ok := f.topics.DeviceOf(topic)
	if !ok {
		return f.bad(fmt.Errorf("%s: not a device status or events topic", topic))
	}
	if strings.HasSuffix(topic, "/status") {
		f.statuses.Add(1)
		f.last.Store(time.Now().UnixNano())
		if len(payload) == 0 { // the retained status was cleared
			f.tracker.Forget(id)
			if f.fleet != nil {
				f.fleet.status(topic, id, payload, nil)
			}
			return nil
		}
		s, err := report.ParseStatus(payload)
		if err != nil {
			return f.bad(fmt.Errorf("%s: %w", topic, err))
		}
		if err := f.tracker.Status(id, s); err != nil {
			return f.bad(fmt.Errorf("%s: %w", topic, err))
		}
		if f.fleet != nil {
			f.fleet.status(topic, id, payload, s)
		}
		return nil
	}
	f.events.Add(1)
	e, err := report.ParseEvent(payload)
	if err != nil {
		return f.bad(fmt.Errorf("%s: %w", topic, err))
	}
	if err := f.tracker.Event(id, e); err != nil {
		return f.bad(fmt.Errorf("%s: %w", topic, err))
	}
	if f.fleet != nil {
		f.fleet.event(id, e)
	}
	return nil
}

func (f *Feed) bad(err error) error {
	f.malformed.Add(1)
	f.mu.Lock()
	f.lastMalformed = err
	f.mu.Unlock()
	return err
}

// Subscribe subscribes c to every device's status and events (QoS 1) with Handle as the
// handler, and waits for the broker's answer. Call it after every connection of a clean
// session (MQTTConfig's onConnect).
func (f *Feed) Subscribe(ctx context.Context, c mqtt.Client) error {
	filters := map[string]byte{f.topics.AllStatus(): 1, f.topics.AllEvents(): 1}
	tok := c.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) { _ = f.Handle(m.Topic(), m.Payload()) })
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("subscribe to device reports: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribe to device reports: %w", err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for filter, code := range st.Result() {
			if code == 0x80 {
				return fmt.Errorf("subscribe %s: %w", filter, ErrSubscribeRefused)
			}
		}
	}
	return nil
}

// ErrSubscribeRefused: the broker refused a subscription (SUBACK 0x80), usually its ACL.
var ErrSubscribeRefused = errors.New("the broker refused the subscription (check its ACL for the controller's user)")

// WaitQuiet returns once no status has arrived for idle (the broker's burst of retained
// statuses after Subscribe is over), or when limit has passed; it reports which. MQTT has no
// end-of-retained marker, so quiet is the signal, as in registry.Collect.
//
// The controller must not judge a wave before the burst is in: a wave whose devices it has
// not heard of yet has nobody pending, and would pass.
func (f *Feed) WaitQuiet(ctx context.Context, idle, limit time.Duration) (quiet bool, err error) {
	start := time.Now()
	deadline := start.Add(limit)
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		since := now.Sub(time.Unix(0, max(f.last.Load(), start.UnixNano())))
		if since >= idle {
			return true, nil
		}
		if !now.Before(deadline) {
			return false, nil
		}
		t.Reset(min(idle-since, deadline.Sub(now)))
	}
}

// FeedStats counts what a Feed was given.
type FeedStats struct {
	Statuses, Events, Malformed uint64
	LastMalformed               error
}

// Stats returns the counters.
func (f *Feed) Stats() FeedStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FeedStats{Statuses: f.statuses.Load(), Events: f.events.Load(), Malformed: f.malformed.Load(), LastMalformed: f.lastMalformed}
}
