package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Defaults of Config.
const (
	DefaultDir           = ".wasmfleet-dev"
	DefaultGroup         = "dev"
	DefaultBucket        = "fleet"
	DefaultRegion        = "us-east-1"
	DefaultSoak          = 5 * time.Second
	DefaultEventInterval = time.Second
	// S3AccessKey is the access key the environment file names. The store accepts any.
	S3AccessKey = "wasmfleet-dev"
	// MQTTUsername is the broker's one user.
	MQTTUsername = "dev"
)

// DefaultWaves are the waves of the dev rollouts: with three agents, about one more device
// in each.
var DefaultWaves = []float64{34, 67, 100}

// ErrBusy: another process runs a dev environment in the directory.
var ErrBusy = errors.New("another wasmfleet dev runs in this directory")

// Config says what to run. Dir is required; every other field has a usable zero value.
type Config struct {
	// Dir is the dev directory: keys, the bucket, the broker's retained messages, the
	// agents' data and the environment file live there. Created when missing.
	Dir string
	// Agents is how many local agents to run, dev-1 to dev-N, in this process; 0: none.
	Agents int
	// Group is the agents' device group; default "dev".
	Group string
	// Bucket is the S3 bucket; default "fleet".
	Bucket string
	// MQTTAddr, S3Addr and HTTPAddr are where the broker, the S3 store and the dashboard
	// listen (host:port). Empty: 127.0.0.1 on the port the last run in Dir used when it is
	// free, else on any free port.
	MQTTAddr, S3Addr, HTTPAddr string
	// Examples is a directory of handlers to publish and roll out to the group: each
	// subdirectory with a manifest.yaml and its built .wasm (modules/examples). Empty:
	// none.
	Examples string
	// Waves of each rollout (percentages, increasing, the last 100); default DefaultWaves.
	Waves []float64
	// Soak is how long each wave is watched before the next opens; default 5s.
	Soak time.Duration
	// EventInterval is how often every agent gets a sample reading; default 1s; negative:
	// no sample events.
	EventInterval time.Duration
	// Dashboard builds the web dashboard on the running controller and the bucket. Nil:
	// a plain-text status page.
	Dashboard func(*controller.Server, *publish.Bucket) (http.Handler, error)
	// Log receives everything the environment reports (the agents' at warn and above).
	Log zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if len(c.Waves) == 0 {
		c.Waves = DefaultWaves
	}
	if c.Soak <= 0 {
		c.Soak = DefaultSoak
	}
	if c.EventInterval == 0 {
		c.EventInterval = DefaultEventInterval
	}
}

// Info is what a user needs to reach the environment. Addresses are set by Start.
type Info struct {
	// Dir is the dev directory (absolute); EnvFile and AgentConfig are files in it.
	Dir, EnvFile, AgentConfig string
	// Created is set when this run made the keys (a new directory).
	Created bool

	// Dashboard is the dashboard's URL; Token its operator token.
	Dashboard, Token string
	// Broker is the MQTT broker's URL (tcp://host:port).
	Broker, MQTTUsername, MQTTPassword string
	// S3Endpoint is the store's host:port (plain http).
	S3Endpoint, Bucket, Region, S3AccessKey, S3SecretKey string

	// Trust is the trust file; RootKey, ReleaseKey and RolloutKey the encrypted keys,
	// whose password is in PasswordFile.
	Trust, RootKey, ReleaseKey, RolloutKey, PasswordFile string
	// Group is the agents' group; Devices their ids.
	Group   string
	Devices []string
}

// Stats counts what a run did.
type Stats struct {
	// S3Puts counts the PUT requests the store served, ReleasePuts those under releases/.
	S3Puts, ReleasePuts uint64
	// Published counts the example releases this run uploaded; RolloutsStarted the
	// rollouts it started.
	Published, RolloutsStarted int
	// Events counts the sample events sent.
	Events uint64
}

// Env is one dev environment. Open it, Start it, Close it; an Env is not started twice.
type Env struct {
	cfg  Config
	log  zerolog.Logger
	dir  string
	lock *os.File
	keys *devKeys
	prev *EnvFile // the previous run's environment file, if any
	info Info

	broker   *broker
	store    *objectStore
	bucket   *publish.Bucket
	ctlStore *controller.Store
	srv      *controller.Server
	http     *http.Server
	httpErr  chan error

	cancel  context.CancelFunc
	ctlDone chan error
	agents  []*localAgent
	bg      sync.WaitGroup // driver and traffic
	settled chan struct{}

	mu    sync.Mutex
	stats Stats
}

// Open takes the dev directory (creating it, and the keys and trust file on the first
// run) and reads the previous run's settings. It starts nothing; a second Open of the same
// directory, in any process, fails with ErrBusy until Close.
func Open(ctx context.Context, cfg Config) (*Env, error) {
	if cfg.Dir == "" {
		return nil, errors.New("devenv: no directory")
	}
	if cfg.Agents < 0 {
		return nil, fmt.Errorf("devenv: %d agents", cfg.Agents)
	}
	cfg.setDefaults()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("devenv: %s: %w", dir, err)
	}
	e := &Env{cfg: cfg, log: cfg.Log, dir: dir, lock: lock, settled: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			unlockDir(lock)
		}
	}()
	if e.keys, err = loadKeys(ctx, filepath.Join(dir, "keys")); err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	envPath := filepath.Join(dir, EnvFileName)
	switch prev, err := ReadEnvFile(envPath); {
	case err == nil:
		e.prev = prev
	case errors.Is(err, os.ErrNotExist):
	default:
		e.log.Warn().Err(err).Msg("the previous environment file is unreadable; new credentials and ports")
	}
	p := e.prev
	if p == nil {
		p = &EnvFile{}
	}
	e.info = Info{
		Dir: dir, EnvFile: envPath, AgentConfig: filepath.Join(dir, "agent.yaml"), Created: e.keys.created,
		Token: orRandom(p.DashboardToken), MQTTUsername: MQTTUsername, MQTTPassword: orRandom(p.MQTTPassword),
		Bucket: cfg.Bucket, Region: DefaultRegion, S3AccessKey: S3AccessKey, S3SecretKey: orRandom(p.S3SecretKey),
		Trust: e.keys.path(trustFile), RootKey: e.keys.path("root.key"), ReleaseKey: e.keys.path("release.key"),
		RolloutKey: e.keys.path("rollout.key"), PasswordFile: e.keys.path(passwordFile), Group: cfg.Group,
	}
	for i := range cfg.Agents {
		e.info.Devices = append(e.info.Devices, fmt.Sprintf("dev-%d", i+1))
	}
	ok = true
	return e, nil
}

// orRandom is s, or 32 random hex digits when s is empty.
func orRandom(s string) string {
	if s != "" {
		return s
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Info describes the environment; the addresses are set once Start has returned.
func (e *Env) Info() Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.info
	i.Devices = append([]string(nil), i.Devices...)
	return i
}

// Stats returns the counters.
func (e *Env) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	if e.store != nil {
		s.S3Puts, s.ReleasePuts = e.store.puts.Load(), e.store.releasePuts.Load()
	}
	return s
}

// Settled is closed once every example handler has been published and rolled out to the
// group (or found there already), or its rollout aborted.
func (e *Env) Settled() <-chan struct{} { return e.settled }

// Start runs everything: the S3 store and the broker, the environment file, the rollout
// controller, the dashboard and the agents; then, in the background, it publishes the
// example handlers, rolls them out and sends sample events until Close. It returns once
// all of it listens. On error, what was started is stopped again; call Close anyway.
func (e *Env) Start(ctx context.Context) error {
	if err := e.start(ctx); err != nil {
		e.stop()
		return err
	}
	return nil
}

func (e *Env) start(ctx context.Context) (err error) {
	p := e.prev
	if p == nil {
		p = &EnvFile{}
	}
	// Listeners not yet handed to a server are closed if starting fails.
	var s3ln, mqln, httpln net.Listener
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{s3ln, mqln, httpln} {
				if ln != nil {
					ln.Close()
				}
			}
		}
	}()
	if s3ln, err = e.listen("s3", e.cfg.S3Addr, p.S3Endpoint); err != nil {
		return err
	}
	if mqln, err = e.listen("mqtt", e.cfg.MQTTAddr, hostOfURL(p.MQTTBrokers)); err != nil {
		return err
	}
	if httpln, err = e.listen("dashboard", e.cfg.HTTPAddr, hostOfURL(p.Dashboard)); err != nil {
		return err
	}
	e.mu.Lock()
	e.info.S3Endpoint = advertised(s3ln.Addr())
	e.info.Broker = "tcp://" + advertised(mqln.Addr())
	e.info.Dashboard = "http://" + advertised(httpln.Addr()) + "/"
	e.mu.Unlock()
	info := e.Info()

	if e.store, err = startStore(s3ln, filepath.Join(e.dir, "s3.db"), e.cfg.Bucket, e.log); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	s3ln = nil
	if e.broker, err = startBroker(mqln, MQTTUsername, info.MQTTPassword, filepath.Join(e.dir, "retained.json"), e.log); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	mqln = nil

	pcfg := publish.Config{Endpoint: info.S3Endpoint, Bucket: info.Bucket, Region: info.Region,
		AccessKey: info.S3AccessKey, SecretKey: info.S3SecretKey, Insecure: true}
	if e.bucket, err = publish.Open(pcfg, e.log); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	if e.ctlStore, err = controller.OpenStore(pcfg); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	if _, err := e.bucket.PublishTrust(ctx, e.keys.trust); err != nil {
		return fmt.Errorf("devenv: upload the trust file: %w", err)
	}
	if err := e.writeFiles(info); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.srv, err = controller.New(controller.Config{
		Store: e.ctlStore,
		MQTT: controller.MQTTConfig{Brokers: []string{info.Broker}, ClientID: "wasmfleet-dev-controller",
			Username: MQTTUsername, Password: info.MQTTPassword},
		Signers: e.keys.signers(), ID: "wasmfleet-dev",
		Interval: time.Second, MinInterval: 100 * time.Millisecond, SyncIdle: 300 * time.Millisecond, SyncMax: 5 * time.Second,
		NoFleet: e.cfg.Dashboard == nil, // the status page reads the Tracker only
		Log:     e.log.With().Str("part", "controller").Logger(),
	})
	if err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	e.ctlDone = make(chan error, 1)
	go func() { e.ctlDone <- e.srv.Run(runCtx) }()

	var h http.Handler
	if e.cfg.Dashboard != nil {
		if h, err = e.cfg.Dashboard(e.srv, e.bucket); err != nil {
			return fmt.Errorf("devenv: dashboard: %w", err)
		}
	} else {
		h = &statusPage{srv: e.srv, group: e.cfg.Group, log: e.log}
	}
	e.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.httpErr = make(chan error, 1)
	go func(ln net.Listener) { e.httpErr <- e.http.Serve(ln) }(httpln)
	httpln = nil

	for _, id := range info.Devices {
		a, err := e.startAgent(runCtx, id, info)
		if err != nil {
			return fmt.Errorf("devenv: agent %s: %w", id, err)
		}
		e.agents = append(e.agents, a)
	}

	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.drive(runCtx)
	}()
	if e.cfg.EventInterval > 0 && len(info.Devices) > 0 {
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			e.traffic(runCtx, info)
		}()
	}
	return nil
}

// listen opens a listener on addr; with addr empty, on 127.0.0.1 at prev's port (the last
// run's) when it is free, else at any free port.
func (e *Env) listen(what, addr, prev string) (net.Listener, error) {
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("devenv: %s: %w", what, err)
		}
		if ip := net.ParseIP(hostOf(ln.Addr().String())); ip == nil || !ip.IsLoopback() {
			e.log.Warn().Str("address", ln.Addr().String()).Msgf("the %s listens beyond this machine: the dev environment's credentials are weak and the S3 store checks none", what)
		}
		return ln, nil
	}
	if h, port, err := net.SplitHostPort(prev); err == nil && h == "127.0.0.1" && port != "0" {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port)); err == nil {
			return ln, nil
		}
		e.log.Info().Str("port", port).Msgf("the %s's port of the last run is taken; using another", what)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devenv: %s: %w", what, err)
	}
	return ln, nil
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// hostOfURL is the host:port of a URL ("" when it has none).
func hostOfURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Host
}

// advertised is the address clients on this machine use for a listener: an unspecified
// host (0.0.0.0, ::) becomes 127.0.0.1.
func advertised(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// writeFiles writes the environment file and the agent configuration for devices that
// join from outside.
func (e *Env) writeFiles(info Info) error {
	ef := &EnvFile{
		S3Endpoint: info.S3Endpoint, S3Bucket: info.Bucket, S3Region: info.Region, S3AccessKey: info.S3AccessKey,
		S3SecretKey: info.S3SecretKey, S3Insecure: true,
		MQTTBrokers: info.Broker, MQTTUsername: info.MQTTUsername, MQTTPassword: info.MQTTPassword,
		Dir: info.Dir, Group: info.Group, Trust: info.Trust, RootKey: info.RootKey, ReleaseKey: info.ReleaseKey,
		RolloutKey: info.RolloutKey, PasswordFile: info.PasswordFile, AgentConfig: info.AgentConfig,
		Dashboard: info.Dashboard, DashboardToken: info.Token,
	}
	if err := ef.Write(info.EnvFile); err != nil {
		return err
	}
	return writeAgentConfig(info)
}

// Close stops everything Start started, in order (sample events and rollouts, agents,
// controller, dashboard, broker, store), and releases the directory. The bucket, the
// retained messages, the keys and the agents' data stay for the next run.
func (e *Env) Close() error {
	err := e.stop()
	if e.lock != nil {
		if uerr := unlockDir(e.lock); err == nil {
			err = uerr
		}
		e.lock = nil
	}
	return err
}

func (e *Env) stop() error {
	var errs []error
	if e.cancel != nil {
		e.cancel()
	}
	e.bg.Wait()
	for _, a := range e.agents {
		if err := a.stop(); err != nil {
			errs = append(errs, fmt.Errorf("agent %s: %w", a.id, err))
		}
	}
	e.agents = nil
	if e.ctlDone != nil {
		if err := <-e.ctlDone; err != nil {
			errs = append(errs, fmt.Errorf("controller: %w", err))
		}
		e.ctlDone = nil
	}
	if e.http != nil {
		if err := shutdown(e.http); err != nil {
			errs = append(errs, fmt.Errorf("dashboard: %w", err))
		}
		<-e.httpErr
		e.http = nil
	}
	if e.broker != nil {
		if err := e.broker.close(); err != nil {
			errs = append(errs, fmt.Errorf("broker: %w", err))
		}
		e.broker = nil
	}
	if e.store != nil {
		if err := e.store.close(); err != nil {
			errs = append(errs, fmt.Errorf("s3 store: %w", err))
		}
		e.mu.Lock()
		e.stats.S3Puts, e.stats.ReleasePuts = e.store.puts.Load(), e.store.releasePuts.Load()
		e.store = nil
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// shutdownGrace is how long a server of the dev environment lets requests in flight finish
// when it stops.
const shutdownGrace = time.Second

// shutdown stops srv, letting requests in flight finish for shutdownGrace, then closes what
// is still open. By then every client of the environment has stopped; what remains is a
// client that went away mid-request, or one that connected and never sent a request, for
// which net/http's Shutdown would wait 5 s, so it is not an error.
func shutdown(srv *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}

// topics are the wasmfleet topics (default prefix).
var topics = report.Topics{}

// verifier checks releases and desired states against the dev trust file.
func (e *Env) verifier() *signing.Verifier { return &signing.Verifier{Trust: e.keys.trust} }

// Running reports whether a `wasmfleet dev` runs in dir now (holds its lock).
func Running(dir string) bool { return locked(filepath.Join(dir, "lock")) }
