package registry

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Defaults of the zero CollectOptions.
const (
	DefaultIdle = 500 * time.Millisecond
	DefaultMax  = 10 * time.Second
)

// CollectOptions bounds Collect. The zero value uses the defaults.
type CollectOptions struct {
	// Idle: the retained burst is taken to be over once no status has arrived for this
	// long after the subscription was acknowledged. Default 500ms.
	Idle time.Duration
	// Max bounds the whole collection, the subscription included. Default 10s.
	Max time.Duration
}

// CollectStats says how a collection ended.
type CollectStats struct {
	// Messages counts the messages received during the collection.
	Messages int
	// Complete: the stream went quiet for Idle; false when Max (or the context) cut it
	// while messages were still arriving, so the registry may lack some devices.
	Complete bool
}

// Handler returns an MQTT message handler that feeds r, for a long-running subscriber (the
// controller) that keeps its subscription. Malformed messages are counted by r.
func (r *Registry) Handler() mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) { _ = r.Handle(m.Topic(), m.Payload()) }
}

// Collect subscribes c (connected) to every device's status, feeds r with the retained
// statuses the broker sends, and returns once none has arrived for opts.Idle after the
// SUBACK, or when opts.Max has passed, or ctx ends. It unsubscribes before returning.
//
// MQTT has no end-of-retained marker, so quiet is the signal: a broker sends the retained
// messages of a new subscription at once, one after the other, so a pause of Idle means the
// burst is over. A broker that is slower than that under load makes the answer incomplete,
// not wrong; raise Idle for very large fleets.
func Collect(ctx context.Context, c mqtt.Client, r *Registry, opts CollectOptions) (CollectStats, error) {
	if opts.Idle <= 0 {
		opts.Idle = DefaultIdle
	}
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Max)
	defer cancel()

	filter := r.topics.AllStatus()
	arrived := make(chan struct{}, 1)
	var stats CollectStats
	var count atomic.Int64
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		_ = r.Handle(m.Topic(), m.Payload())
		count.Add(1)
		select {
		case arrived <- struct{}{}:
		default:
		}
	})
	defer func() {
		u := c.Unsubscribe(filter)
		u.WaitTimeout(time.Second)
	}()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return stats, fmt.Errorf("subscribe %s: %w", filter, context.Cause(ctx))
	}
	if err := tok.Error(); err != nil {
		return stats, fmt.Errorf("subscribe %s: %w", filter, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code == 0x80 {
				return stats, fmt.Errorf("subscribe %s: %w", filter, ErrSubscribeRefused)
			}
		}
	}

	idle := time.NewTimer(opts.Idle)
	defer idle.Stop()
	for {
		select {
		case <-arrived:
			idle.Reset(opts.Idle)
		case <-idle.C:
			stats.Complete = true
			stats.Messages = int(count.Load())
			return stats, nil
		case <-ctx.Done():
			stats.Messages = int(count.Load())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return stats, nil // Max reached: an incomplete answer, not a failure
			}
			return stats, ctx.Err()
		}
	}
}

// ErrSubscribeRefused: the broker refused the subscription (SUBACK 0x80), usually its ACL.
var ErrSubscribeRefused = errors.New("the broker refused the subscription (check its ACL for this user)")
