package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
)

// sessionOptions is what the MQTT session needs; the agent fills it from its config.
type sessionOptions struct {
	Brokers            []string
	ClientID           string
	Username, Password string
	TLS                *tls.Config // nil: plain TCP (unless a broker URL says ssl://)
	KeepAlive          time.Duration
	ConnectTimeout     time.Duration
	// Will is published retained by the broker when the agent vanishes.
	WillTopic   string
	WillPayload []byte
	// Backoff bounds the jittered exponential wait between connection attempts.
	BackoffMin, BackoffMax time.Duration
	// OutboxSize bounds the messages waiting for the broker; more are dropped, counted.
	OutboxSize int
}

// inbound is a message from the broker. ack must be called once it has been handled: the
// broker redelivers unacknowledged QoS 1 messages after a reconnect, with dup set and the
// same packet id.
type inbound struct {
	topic   string
	payload []byte
	ack     func()
	qos     byte
	dup     bool
	id      uint16 // packet id (QoS 1 and 2)
}

// outMsg is a message for the broker.
type outMsg struct {
	topic    string
	payload  []byte
	retained bool
}

// session is the agent's MQTT connection: a persistent session (clean session off) with
// QoS 1 subscriptions, manual acknowledgements, a last will, reconnection with jittered
// exponential backoff, and a bounded outbox that holds publishes while the broker is away.
type session struct {
	opts   sessionOptions
	log    zerolog.Logger
	client mqtt.Client

	onMessage func(inbound)
	onConnect func() // called after each (re)connection, subscriptions made

	mu        sync.Mutex
	filters   map[string]bool // wanted subscriptions
	connected bool
	up        chan struct{} // closed while connected
	lost      chan struct{} // signalled when the connection drops

	outbox      chan outMsg
	unacked     atomic.Int64 // in the outbox or sent and not yet acknowledged: at most OutboxSize
	dropped     atomic.Uint64
	connects    atomic.Uint64
	reconnected atomic.Uint64
	conn        atomic.Pointer[bufferedConn] // the latest connection opened
}

func newSession(opts sessionOptions, log zerolog.Logger, onMessage func(inbound), onConnect func()) *session {
	s := &session{opts: opts, log: log, onMessage: onMessage, onConnect: onConnect,
		filters: map[string]bool{}, up: make(chan struct{}), lost: make(chan struct{}, 1),
		// publish admits at most OutboxSize unacknowledged messages, so a send never blocks.
		outbox: make(chan outMsg, max(opts.OutboxSize, 1))}
	o := mqtt.NewClientOptions()
	for _, b := range opts.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(opts.ClientID).
		SetCleanSession(false).
		SetAutoReconnect(false). // our own loop, with jitter
		SetConnectRetry(false).
		SetResumeSubs(true).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetCustomOpenConnectionFn(func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
			c, err := openBrokerConn(u, o)
			if err != nil {
				return nil, err // not a nil *bufferedConn in a non-nil net.Conn
			}
			s.conn.Store(c)
			return c, nil
		}).
		SetStore(newOrderedStore()).
		SetKeepAlive(opts.KeepAlive).
		SetPingTimeout(max(opts.KeepAlive/2, time.Second)).
		SetConnectTimeout(opts.ConnectTimeout).
		SetWriteTimeout(opts.ConnectTimeout).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			s.onMessage(inbound{topic: m.Topic(), payload: m.Payload(), ack: m.Ack, qos: m.Qos(), dup: m.Duplicate(), id: m.MessageID()})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.log.Warn().Err(err).Msg("mqtt connection lost")
			s.setConnected(false)
			select {
			case s.lost <- struct{}{}:
			default:
			}
		})
	if opts.Username != "" {
		o.SetUsername(opts.Username)
		o.SetPassword(opts.Password)
	}
	if opts.TLS != nil {
		o.SetTLSConfig(opts.TLS)
	}
	if opts.WillTopic != "" {
		o.SetBinaryWill(opts.WillTopic, opts.WillPayload, 1, true)
	}
	s.client = mqtt.NewClient(o)
	return s
}

func (s *session) setConnected(c bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == s.connected {
		return
	}
	s.connected = c
	if c {
		close(s.up)
	} else {
		s.up = make(chan struct{})
	}
}

// isConnected reports whether the session is up.
func (s *session) isConnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// upChan returns a channel closed while connected.
func (s *session) upChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// run keeps the session connected and drains the outbox until ctx ends, then disconnects.
func (s *session) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.drain(ctx) }()
	backoff := s.opts.BackoffMin
	for {
		if err := s.connect(ctx); err != nil {
			wait := jitter(backoff)
			s.log.Warn().Err(err).Dur("retry_in", wait).Msg("mqtt connect failed")
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, s.opts.BackoffMax)
			continue
		}
		backoff = s.opts.BackoffMin
		select {
		case <-ctx.Done():
			wg.Wait()
			s.client.Disconnect(250)
			// Disconnect returns after 250 ms whether or not the connection has sent what
			// it had queued (its DISCONNECT last: without it the broker publishes the
			// will), and the process may exit next.
			if c := s.conn.Load(); c != nil {
				select {
				case <-c.done:
				case <-time.After(s.opts.ConnectTimeout):
				}
			}
			s.setConnected(false)
			return
		case <-s.lost:
			s.reconnected.Add(1)
		}
	}
}

// jitter returns a duration uniformly in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func (s *session) connect(ctx context.Context) error {
	t := s.client.Connect()
	if !waitToken(ctx, t, s.opts.ConnectTimeout+time.Second) {
		return fmt.Errorf("connect to %v: timed out", s.opts.Brokers)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("connect to %v: %w", s.opts.Brokers, err)
	}
	s.connects.Add(1)
	if err := s.resubscribe(ctx); err != nil {
		s.client.Disconnect(0)
		return err
	}
	s.setConnected(true)
	s.log.Info().Strs("brokers", s.opts.Brokers).Msg("mqtt connected")
	s.onConnect()
	return nil
}

func waitToken(ctx context.Context, t mqtt.Token, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return true
	case <-ctx.Done():
		return false
	case <-timer.C:
		return false
	}
}

// resubscribe subscribes to every wanted filter (QoS 1). With a persistent session the
// broker usually still has them; subscribing again is harmless and covers a broker that
// lost its state.
func (s *session) resubscribe(ctx context.Context) error {
	s.mu.Lock()
	filters := map[string]byte{}
	for f := range s.filters {
		filters[f] = 1
	}
	s.mu.Unlock()
	if len(filters) == 0 {
		return nil
	}
	t := s.client.SubscribeMultiple(filters, nil)
	if !waitToken(ctx, t, s.opts.ConnectTimeout+time.Second) {
		return fmt.Errorf("subscribe: timed out")
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

// setFilters makes the subscriptions exactly filters, now if connected, else on connect.
func (s *session) setFilters(ctx context.Context, filters []string) {
	want := map[string]bool{}
	for _, f := range filters {
		want[f] = true
	}
	s.mu.Lock()
	var add, drop []string
	for f := range want {
		if !s.filters[f] {
			add = append(add, f)
		}
	}
	for f := range s.filters {
		if !want[f] {
			drop = append(drop, f)
		}
	}
	s.filters = want
	connected := s.connected
	s.mu.Unlock()
	if !connected {
		return
	}
	if len(add) > 0 {
		m := map[string]byte{}
		for _, f := range add {
			m[f] = 1
		}
		t := s.client.SubscribeMultiple(m, nil)
		if waitToken(ctx, t, s.opts.ConnectTimeout+time.Second) && t.Error() != nil {
			s.log.Warn().Err(t.Error()).Strs("filters", add).Msg("subscribe")
		}
	}
	if len(drop) > 0 {
		t := s.client.Unsubscribe(drop...)
		if waitToken(ctx, t, s.opts.ConnectTimeout+time.Second) && t.Error() != nil {
			s.log.Warn().Err(t.Error()).Strs("filters", drop).Msg("unsubscribe")
		}
	}
}

// publish queues a message for the broker; when OutboxSize messages are already queued or
// unacknowledged it is dropped, counted.
func (s *session) publish(topic string, payload []byte, retained bool) {
	for {
		n := s.unacked.Load()
		if n >= int64(s.opts.OutboxSize) {
			if s.dropped.Add(1)%100 == 1 {
				s.log.Warn().Str("topic", topic).Uint64("dropped", s.dropped.Load()).Msg("outbox full: dropping publishes")
			}
			return
		}
		if s.unacked.CompareAndSwap(n, n+1) {
			break
		}
	}
	s.outbox <- outMsg{topic, payload, retained}
}

// publishNow publishes directly if connected (for the retained status, which is sent again
// on every connection anyway) and reports whether the broker took it.
func (s *session) publishNow(ctx context.Context, topic string, payload []byte, retained bool) bool {
	if !s.isConnected() {
		return false
	}
	t := s.client.Publish(topic, 1, retained, payload)
	return waitToken(ctx, t, s.opts.ConnectTimeout+time.Second) && t.Error() == nil
}

// outboxWindow is how many outbox messages may wait for the broker's acknowledgement at once.
// One at a time would cap the agent at one message per round trip to the broker.
const outboxWindow = 32

// sending is an outbox message in the window: tok is nil until it is handed to paho.
type sending struct {
	m   outMsg
	tok mqtt.Token
}

// drain sends outbox messages while connected, in order, with up to outboxWindow of them
// awaiting acknowledgement. A message paho took (gave a packet id and stored) is paho's to
// send again: with a persistent session, its token stays pending across a lost connection
// and completes when the next connection's resume sends the message again (in the order
// stored, see orderedStore). Only a message paho did not take (not connected, say) is
// published again, once connected. Nothing is dropped, and nothing is sent twice by both.
func (s *session) drain(ctx context.Context) {
	var window []sending
	for {
		if len(window) == 0 {
			select {
			case <-ctx.Done():
				return
			case m := <-s.outbox:
				window = append(window, sending{m: m})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.upChan():
		}
		for i := range window {
			if window[i].tok == nil {
				window[i].tok = s.send(window[i].m)
			}
		}
	fill:
		for len(window) < outboxWindow {
			select {
			case m := <-s.outbox:
				window = append(window, sending{m, s.send(m)})
			default:
				break fill
			}
		}
		var more <-chan outMsg
		if len(window) < outboxWindow {
			more = s.outbox
		}
		head := window[0].tok
		select {
		case <-ctx.Done():
			return
		case m := <-more:
			window = append(window, sending{m, s.send(m)})
			continue
		case <-head.Done():
			if head.Error() == nil {
				window = slices.Delete(window, 0, 1)
				s.unacked.Add(-1)
				continue
			}
		}
		// paho refused the head: drop what was acknowledged meanwhile, keep waiting for
		// what paho holds, and publish the refused ones again once connected.
		window = slices.DeleteFunc(window, func(e sending) bool {
			select {
			case <-e.tok.Done():
				if e.tok.Error() == nil {
					s.unacked.Add(-1)
					return true
				}
			default:
			}
			return false
		})
		for i := range window {
			select {
			case <-window[i].tok.Done():
				window[i].tok = nil // refused, so done with an error
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(s.opts.BackoffMin)):
		}
	}
}

// send publishes m with QoS 1.
func (s *session) send(m outMsg) mqtt.Token {
	return s.client.Publish(m.topic, 1, m.retained, m.payload)
}

// queued returns the number of messages in the outbox or not yet acknowledged by the broker.
func (s *session) queued() int {
	return int(s.unacked.Load())
}
