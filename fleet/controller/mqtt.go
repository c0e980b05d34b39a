package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
)

// MQTTConfig says how the controller reaches the broker. Brokers is required; every other
// field has a usable zero value.
type MQTTConfig struct {
	// Brokers are URLs (tcp://, ssl://, tls://, mqtts://), tried in turn.
	Brokers []string
	// ClientID: empty is "wasmfleet-controller-" and a random suffix. The session is clean:
	// everything the controller needs is retained or re-read on connection.
	ClientID           string
	Username, Password string
	// TLS for ssl:// brokers; nil uses the system's roots.
	TLS *tls.Config
	// ConnectTimeout bounds one connection attempt; default 10s. KeepAlive defaults to 30s.
	ConnectTimeout, KeepAlive time.Duration
}

// String leaves the password out.
func (c MQTTConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("controller.MQTTConfig{Brokers:%q ClientID:%q Username:%q Password:%s TLS:%t}",
		c.Brokers, c.ClientID, c.Username, pw, c.TLS != nil)
}

// Connect opens a session that paho reconnects by itself once it has been up (its backoff,
// up to 10s between attempts), and calls onConnect, on paho's goroutine, after every
// connection: that is where subscriptions are made, since the session is clean. It returns
// once the first connection is up, or when ctx ends. Until then it tries again every few
// seconds, logging why each attempt failed, except when the broker refuses the credentials:
// that is a configuration error, returned at once.
func Connect(ctx context.Context, cfg MQTTConfig, log zerolog.Logger, onConnect func(mqtt.Client)) (mqtt.Client, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("mqtt: no broker")
	}
	if cfg.ClientID == "" {
		var b [6]byte
		rand.Read(b[:])
		cfg.ClientID = "wasmfleet-controller-" + hex.EncodeToString(b[:])
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	o := mqtt.NewClientOptions().SetClientID(cfg.ClientID).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(false).
		SetMaxReconnectInterval(10 * time.Second).SetConnectTimeout(cfg.ConnectTimeout).
		SetKeepAlive(cfg.KeepAlive).SetPingTimeout(max(cfg.KeepAlive/3, time.Second)).
		SetWriteTimeout(cfg.ConnectTimeout).
		// Handlers only parse and record (Feed): in order, on paho's goroutine, is cheapest.
		SetOrderMatters(true).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			log.Warn().Err(err).Msg("mqtt connection lost; reconnecting")
		}).
		SetOnConnectHandler(func(c mqtt.Client) {
			log.Info().Str("client_id", cfg.ClientID).Msg("mqtt connected")
			if onConnect != nil {
				onConnect(c)
			}
		})
	for _, b := range cfg.Brokers {
		o.AddBroker(b)
	}
	if cfg.Username != "" {
		o.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.TLS != nil {
		o.SetTLSConfig(cfg.TLS)
	}
	c := mqtt.NewClient(o)
	where := strings.Join(cfg.Brokers, ", ")
	wait := time.Second
	for {
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			c.Disconnect(0)
			return nil, fmt.Errorf("connect to %s: %w", where, ctx.Err())
		}
		err := tok.Error()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) ||
			errors.Is(err, packets.ErrorRefusedIDRejected) || errors.Is(err, packets.ErrorRefusedBadProtocolVersion) {
			return nil, fmt.Errorf("connect to %s: %w", where, err)
		}
		log.Warn().Err(err).Str("brokers", where).Dur("retry_in", wait).Msg("cannot connect to the broker")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect to %s: %w", where, ctx.Err())
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// DefaultPublishTimeout bounds a desired-state publish that the broker does not
// acknowledge.
const DefaultPublishTimeout = 30 * time.Second

// Publisher is rollout.Publisher on a paho client: QoS 1, retained, returning once the
// broker's PUBACK is in.
type Publisher struct {
	Client mqtt.Client
	// Timeout bounds the wait for the PUBACK; zero is DefaultPublishTimeout. A publish that
	// timed out may still reach the broker; the controller publishes the same bytes again.
	Timeout time.Duration

	published, bytes atomic.Uint64
}

var _ rollout.Publisher = (*Publisher)(nil)

// PublishRetained sends payload retained with QoS 1 and waits for the broker to have it.
func (p *Publisher) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPublishTimeout
	}
	if !p.Client.IsConnectionOpen() {
		return fmt.Errorf("publish %s: not connected to the broker", topic)
	}
	tok := p.Client.Publish(topic, 1, true, payload)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	case <-t.C:
		return fmt.Errorf("publish %s: no acknowledgement from the broker within %v", topic, timeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	p.published.Add(1)
	p.bytes.Add(uint64(len(payload)))
	return nil
}

// Published counts the messages the broker acknowledged, and their payload bytes.
func (p *Publisher) Published() (messages, bytes uint64) { return p.published.Load(), p.bytes.Load() }

// hostname is os.Hostname, or "controller" when the system has none.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "controller"
	}
	return h
}
