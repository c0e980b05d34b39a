package devenv

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/rs/zerolog"
)

// maxPacketSize bounds an MQTT packet on the embedded broker: desired states and statuses
// are kilobytes; modules travel through S3.
const maxPacketSize = 1 << 20

// broker is the embedded MQTT broker (mochi-mqtt): one plain TCP listener, one user, the
// retained messages kept in a file.
type broker struct {
	srv      *mqtt.Server
	retained *retainedHook
	addr     string
}

// startBroker serves MQTT on ln. Only user with password may connect; every topic is open
// to it. Retained messages are read from and written to retainedPath.
func startBroker(ln net.Listener, user, password, retainedPath string, log zerolog.Logger) (*broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi gives messages without an expiry one of a day by default, retained ones
	// included: a group's desired state would vanish from a dev environment left running.
	caps.MaximumMessageExpiryInterval = 0
	caps.MaximumPacketSize = maxPacketSize
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(zerologHandler{log: log.With().Str("part", "broker").Logger()}),
		SysTopicResendInterval: 10,
	})
	ledger := &auth.Ledger{Users: auth.Users{user: {Username: auth.RString(user), Password: auth.RString(password)}}}
	if err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	rh, err := openRetained(retainedPath, log)
	if err != nil {
		return nil, err
	}
	if err := srv.AddHook(rh, nil); err != nil {
		rh.Stop()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		rh.Stop()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.Serve(); err != nil { // Serve returns once the listeners run
		srv.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &broker{srv: srv, retained: rh, addr: ln.Addr().String()}, nil
}

// URL is the broker's address as clients name it.
func (b *broker) URL() string { return "tcp://" + b.addr }

// close disconnects every client, stops the listener and writes the retained messages.
func (b *broker) close() error {
	return b.srv.Close()
}

// zerologHandler passes mochi-mqtt's slog records on to a zerolog.Logger, one level down:
// mochi reports every connection at info and a client that hangs up mid-write at warn,
// which in a dev environment is noise. Packet dumps (the "pk" attribute) are left out and
// long values cut.
type zerologHandler struct {
	log   zerolog.Logger
	attrs []slog.Attr
}

func (h zerologHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.GetLevel() <= levelOf(l) && levelOf(l) != zerolog.NoLevel
}

func levelOf(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.WarnLevel
	case l >= slog.LevelWarn:
		return zerolog.DebugLevel
	}
	return zerolog.NoLevel
}

func (h zerologHandler) Handle(_ context.Context, r slog.Record) error {
	ev := h.log.WithLevel(levelOf(r.Level))
	add := func(a slog.Attr) bool {
		if a.Key != "pk" {
			ev = ev.Str(a.Key, truncate(a.Value.String(), 200))
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	ev.Msg(r.Message)
	return nil
}

func (h zerologHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return zerologHandler{log: h.log, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h zerologHandler) WithGroup(string) slog.Handler { return h }
