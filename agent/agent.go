// Package agent is the device daemon: it keeps an MQTT session, verifies the desired state
// the fleet publishes, fetches and verifies the releases it names from S3-compatible
// storage, activates them in the sandbox behind a health window that rolls back a bad
// release, runs their handlers on MQTT messages and intervals, and reports what it runs.
//
// Run is the whole of it; cmd/wasmfleet-agent only parses flags and config. The pieces live
// in their own packages: agent/config, agent/store (what is on disk), agent/fetch (S3),
// agent/sandbox (running modules), signing (what to trust), protocol/report (what the fleet
// is told).
package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/agent/fetch"
	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/agent/store"
	"github.com/wasmfleet/wasmfleet/internal/tlsconf"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Version is the agent's version, reported in its status. Set with -ldflags -X.
var Version = "dev"

// Agent is one running device agent. Use Run; New and Start exist for tests that need to
// look inside.
type Agent struct {
	cfg    *config.Config
	log    zerolog.Logger
	topics report.Topics

	store   *store.Store
	fetcher *fetch.Fetcher
	kv      *kv.Store
	rt      *sandbox.Runtime
	sess    *session

	mu         sync.Mutex
	trust      *signing.Trust
	sources    map[string]*signing.Desired // verified desired state by source
	active     map[string]*running         // by module name
	installing map[string]bool             // modules with an install in progress
	// installs hold collecting for reading for their whole length, gc for writing: what an
	// install has downloaded, stored or compiled but not yet recorded is never collected.
	collecting  sync.RWMutex
	retry       map[string]backoff // modules whose last install failed and may succeed later
	refused     map[string]refusal // modules whose target was refused for good
	desiredIn   chan inbound       // desired-state messages, verified in arrival order
	redelivered *redeliveries      // MQTT messages the broker sent again
	lastError   string
	wake        chan struct{} // asks the updater to reconcile
	ctx         context.Context
	wg          sync.WaitGroup
	statusDue   chan struct{}
	trimDue     chan struct{} // asks the trimmer to hand memory back (see retire)
	started     time.Time
}

// Run runs the agent until ctx ends. It returns an error only when it cannot start (bad
// config, unreadable trust root, data directory in use); once running, it outlives broker
// and storage outages.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	a, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Start(ctx)
}

// New opens the agent's data directory, trust root, sandbox and clients without connecting.
func New(ctx context.Context, cfg *config.Config, log zerolog.Logger) (a *Agent, err error) {
	a = &Agent{
		cfg: cfg, log: log, topics: report.Topics{Prefix: cfg.MQTT.TopicPrefix},
		sources: map[string]*signing.Desired{}, active: map[string]*running{}, installing: map[string]bool{},
		retry: map[string]backoff{}, refused: map[string]refusal{}, desiredIn: make(chan inbound, 64), redelivered: newRedeliveries(),
		wake: make(chan struct{}, 1), statusDue: make(chan struct{}, 1), trimDue: make(chan struct{}, 1), started: time.Now(),
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if a.store, err = store.Open(filepath.Join(cfg.DataDir, "store"), log.With().Str("component", "store").Logger()); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if a.trust, err = a.loadTrust(); err != nil {
		return nil, err
	}
	if a.kv, err = kv.Open(filepath.Join(cfg.DataDir, "kv"), log.With().Str("component", "kv").Logger()); err != nil {
		return nil, fmt.Errorf("open kv store: %w", err)
	}
	work, err := cleanWorkDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.rt, err = sandbox.New(ctx, sandbox.Config{
		DeviceID:      cfg.DeviceID,
		Policy:        cfg.Policy.ForDevice(cfg.DeviceID),
		MaxModuleSize: int(cfg.Policy.MaxModuleSize),
		CacheDir:      filepath.Join(cfg.DataDir, "cache"),
		WorkDir:       work,
		KV:            a.kv,
		Log:           log.With().Str("component", "sandbox").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	if a.fetcher, err = fetch.New(fetch.Config{
		Endpoint: cfg.S3.Endpoint, Bucket: cfg.S3.Bucket, Region: cfg.S3.Region,
		AccessKey: cfg.S3.AccessKey, SecretKey: string(cfg.S3.SecretKey), Insecure: cfg.S3.Insecure, CAFile: cfg.S3.CAFile,
		Retry: fetch.RetryPolicy{MaxAttempts: fetchAttempts},
	}, log.With().Str("component", "fetch").Logger()); err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	tlsCfg, err := mqttTLS(cfg)
	if err != nil {
		return nil, err
	}
	// The will says which device went away and what it was, so that a reader who never saw
	// its live status still knows its groups.
	will, _ := jsonMarshal(report.Status{Device: cfg.DeviceID, Online: false, Groups: cfg.Groups,
		AgentVersion: Version, Arch: Arch(), Engine: engine()})
	a.sess = newSession(sessionOptions{
		Brokers: cfg.MQTT.Brokers, ClientID: cfg.MQTT.ClientID,
		Username: cfg.MQTT.Username, Password: string(cfg.MQTT.Password), TLS: tlsCfg,
		KeepAlive: time.Duration(cfg.MQTT.KeepAlive), ConnectTimeout: time.Duration(cfg.MQTT.ConnectTimeout),
		WillTopic: a.topics.Status(cfg.DeviceID), WillPayload: will,
		BackoffMin: reconnectMin, BackoffMax: reconnectMax,
		OutboxSize: cfg.Outbox.MaxMessages,
	}, log.With().Str("component", "mqtt").Logger(), a.onMessage, a.onConnect)
	return a, nil
}

// cleanWorkDir empties and returns the data directory's work/, where the sandbox makes its
// private compilation directory (a copy of the sealed cache) for the life of the process. A
// process that is killed cannot remove its own, and every start copies the whole cache into
// a new one: after a few hundred crashes that was most of the disk. Nothing in work/ is worth
// keeping (the sealed cache is in cache/), and the store's lock, held by now, says no other
// agent is using this data directory. Copies left by agents from before work/ existed, at
// the top of the data directory, go too.
func cleanWorkDir(dataDir string) (string, error) {
	work := filepath.Join(dataDir, "work")
	old, _ := filepath.Glob(filepath.Join(dataDir, "wasmfleet-compiled-*"))
	for _, d := range append(old, work) {
		if err := os.RemoveAll(d); err != nil {
			return "", fmt.Errorf("remove the work directory of an earlier run: %w", err)
		}
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return "", fmt.Errorf("create work directory: %w", err)
	}
	return work, nil
}

// mqttTLS builds the TLS configuration for the broker: the CA to trust and, for mTLS, the
// client certificate.
func mqttTLS(cfg *config.Config) (*tls.Config, error) {
	m := cfg.MQTT
	if m.CAFile == "" && m.CertFile == "" {
		return nil, nil
	}
	t, err := tlsconf.Client(m.CAFile, m.CertFile, m.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt TLS: %w", err)
	}
	return t, nil
}

// loadTrust returns the newest trust file the device has verified: the one it was
// provisioned with, or a later rotation kept in the store.
func (a *Agent) loadTrust() (*signing.Trust, error) {
	raw, err := os.ReadFile(a.cfg.TrustRoot)
	if err != nil {
		return nil, fmt.Errorf("read trust root: %w", err)
	}
	t, err := signing.ParseTrust(raw)
	if err != nil {
		return nil, fmt.Errorf("trust root %s: %w", a.cfg.TrustRoot, err)
	}
	kept, err := a.store.Trust()
	if err != nil {
		return nil, fmt.Errorf("read stored trust file: %w", err)
	}
	if kept != nil {
		k, err := signing.ParseTrust(kept)
		switch {
		case err != nil:
			a.log.Warn().Err(err).Msg("stored trust file does not verify; using the provisioned one")
		case k.Version() > t.Version():
			return k, nil
		}
	}
	return t, nil
}

// Close releases everything New opened.
func (a *Agent) Close() {
	a.mu.Lock()
	active := a.active
	a.active = map[string]*running{}
	a.mu.Unlock()
	for _, r := range active {
		r.stop()
	}
	if a.rt != nil {
		a.rt.Close(context.Background())
	}
	if a.fetcher != nil {
		a.fetcher.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
}

// Start restores the installed modules, connects, and runs until ctx ends.
func (a *Agent) Start(ctx context.Context) error {
	a.ctx = ctx
	a.restore(ctx)
	a.log.Info().Str("device", a.cfg.DeviceID).Strs("groups", a.cfg.Groups).Str("version", Version).
		Int("modules", len(a.active)).Uint64("trust_version", a.trust.Version()).Msg("agent started")
	a.updateFilters()

	var metrics *http.Server
	if a.cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		metrics = &http.Server{Handler: http.HandlerFunc(a.serveMetrics), ReadHeaderTimeout: 5 * time.Second}
		go metrics.Serve(ln)
	}
	a.wg.Add(5)
	go func() { defer a.wg.Done(); a.desiredLoop(ctx) }()
	go func() { defer a.wg.Done(); a.sess.run(ctx) }()
	go func() { defer a.wg.Done(); a.updater(ctx) }()
	go func() { defer a.wg.Done(); a.reporter(ctx) }()
	go func() { defer a.wg.Done(); a.trimmer(ctx) }()
	<-ctx.Done()
	a.wg.Wait()
	if metrics != nil {
		metrics.Close()
	}
	a.log.Info().Msg("agent stopped")
	return nil
}

// Arch names the platform as the status reports it: amd64, arm64, armv7, armv6.
func Arch() string {
	if runtime.GOARCH == "arm" {
		return "armv" + goarm()
	}
	return runtime.GOARCH
}

// fetchAttempts is how many attempts in a row without progress one fetch makes (some 2 to
// 3 s of backoff) before the install fails and is reported: a bucket that is away shows in
// the status as a failure, which the updater retries with its own, longer backoff
// (retryMin to retryMax), resuming the download.
const fetchAttempts = 5

// Reconnection to the broker waits a jittered, doubling delay between these bounds.
const (
	reconnectMin = 250 * time.Millisecond
	reconnectMax = 30 * time.Second
)
