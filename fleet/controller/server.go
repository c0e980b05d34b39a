package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// Config is what `wasmfleet serve` runs. Store, MQTT.Brokers and Signers are required;
// every other field has a usable zero value.
type Config struct {
	// Store is the bucket (a *Store in production).
	Store rollout.Store
	MQTT  MQTTConfig
	// Topics: the zero value is the wasmfleet/ prefix.
	Topics report.Topics
	// Signers are the rollout keys (check them first with CheckSigners).
	Signers []signature.Signer
	// ID names this controller in the leases it takes; empty: the host name, so that a
	// controller restarted on the same host resumes its rollouts at once. Two controllers
	// must have different IDs.
	ID string
	// Lease, DesiredTTL, Interval and MinInterval are rollout.Options'; zero: its defaults.
	Lease, DesiredTTL, Interval, MinInterval time.Duration
	// SyncIdle and SyncMax bound the wait for the broker's burst of retained statuses
	// before the first tick (Feed.WaitQuiet); defaults 1s and 60s.
	SyncIdle, SyncMax time.Duration
	// PublishTimeout bounds a publish (Publisher.Timeout).
	PublishTimeout time.Duration
	// Clock: nil is the system clock.
	Clock rollout.Clock
	Log   zerolog.Logger
	// NoFleet: do not keep the Fleet (the dashboard's view of the devices: a second copy
	// of every status, and recent events), for a controller without a dashboard. A
	// dashboard on such a server shows no devices.
	NoFleet bool
}

// Defaults of Config.
const (
	DefaultSyncIdle = time.Second
	DefaultSyncMax  = time.Minute
)

// Server is the rollout controller wired to S3 and MQTT: rollout.Controller with the
// Store, a Publisher and a Feed on one MQTT session.
type Server struct {
	cfg     Config
	tracker *rollout.Tracker
	fleet   *Fleet
	feed    *Feed
	pub     *Publisher
	ctl     *rollout.Controller

	mu     sync.Mutex
	client mqtt.Client
	synced bool
}

// New checks cfg and builds a Server. It connects to nothing.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("controller: a store is required")
	case len(cfg.MQTT.Brokers) == 0:
		return nil, errors.New("controller: a broker is required")
	case len(cfg.Signers) == 0:
		return nil, errors.New("controller: a rollout key is required")
	}
	if cfg.ID == "" {
		cfg.ID = hostname()
	}
	if cfg.SyncIdle <= 0 {
		cfg.SyncIdle = DefaultSyncIdle
	}
	if cfg.SyncMax <= 0 {
		cfg.SyncMax = DefaultSyncMax
	}
	s := &Server{cfg: cfg, tracker: rollout.NewTracker(cfg.Clock)}
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock.Now
	}
	s.fleet = NewFleet(cfg.Topics, now)
	s.feed = NewFeed(cfg.Topics, s.tracker)
	if !cfg.NoFleet {
		s.feed.fleet = s.fleet
	}
	s.pub = &Publisher{Timeout: cfg.PublishTimeout}
	ctl, err := rollout.New(rollout.Options{
		Store: cfg.Store, Publisher: s.pub, Signers: cfg.Signers, Reports: s.tracker, Clock: cfg.Clock,
		Topics: cfg.Topics, ID: cfg.ID, Lease: cfg.Lease, DesiredTTL: cfg.DesiredTTL,
		Interval: cfg.Interval, MinInterval: cfg.MinInterval, Log: cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	s.ctl = ctl
	return s, nil
}

// Controller is the rollout controller the server drives (for Start, Pause, ... in
// process).
func (s *Server) Controller() *rollout.Controller { return s.ctl }

// Tracker is the server's view of the devices, as the rollouts judge them.
func (s *Server) Tracker() *rollout.Tracker { return s.tracker }

// Fleet is the server's fuller view of the devices (every status, recent update events of
// every kind), for the dashboard; it stays empty when Config.NoFleet is set.
func (s *Server) Fleet() *Fleet { return s.fleet }

// Feed is what hands the broker's device messages to the Tracker and the Fleet. Run
// subscribes it; a test or an embedded broker may call its Handle directly.
func (s *Server) Feed() *Feed { return s.feed }

// Topics are the wasmfleet topics the server reads and writes.
func (s *Server) Topics() report.Topics { return s.cfg.Topics }

// Store is the bucket the server keeps the rollouts in.
func (s *Server) Store() rollout.Store { return s.cfg.Store }

// Run connects to the broker, subscribes to every device's status and events, waits for
// the retained statuses to be in, then drives the rollouts until ctx ends. It returns an
// error only when it cannot start.
func (s *Server) Run(ctx context.Context) error {
	log := s.cfg.Log
	subscribed := make(chan error, 1)
	client, err := Connect(ctx, s.cfg.MQTT, log, func(c mqtt.Client) {
		err := s.feed.Subscribe(ctx, c)
		if err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("subscribe to device reports")
		}
		select {
		case subscribed <- err:
		default:
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while the broker was still out of reach
		}
		return fmt.Errorf("controller: %w", err)
	}
	defer client.Disconnect(250)
	s.mu.Lock()
	s.client = client
	s.mu.Unlock()
	s.pub.Client = client

	select {
	case err := <-subscribed:
		if err != nil {
			return fmt.Errorf("controller: %w", err)
		}
	case <-ctx.Done():
		return nil
	}
	start := time.Now()
	quiet, err := s.feed.WaitQuiet(ctx, s.cfg.SyncIdle, s.cfg.SyncMax)
	if err != nil {
		return nil // ctx ended
	}
	st := s.feed.Stats()
	ev := log.Info()
	if !quiet {
		ev = log.Warn()
	}
	ev.Uint64("statuses", st.Statuses).Dur("took", time.Since(start)).Bool("complete", quiet).
		Str("id", s.ctl.ID()).Msg("device statuses read; driving rollouts")
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	s.tracker.OnChange(s.ctl.Wake)
	return s.ctl.Run(ctx)
}

// Synced reports whether the server has read the retained statuses and drives rollouts.
func (s *Server) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Stats is what the server did, for benchmarks and logs.
type Stats struct {
	Feed FeedStats
	// Published counts the desired states the broker acknowledged, and their bytes.
	Published, PublishedBytes uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	m, b := s.pub.Published()
	return Stats{Feed: s.feed.Stats(), Published: m, PublishedBytes: b}
}
