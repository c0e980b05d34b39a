package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/dashboard"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/sdnotify"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

func init() {
	register("serve", "run the rollout controller and the dashboard (until SIGINT or SIGTERM)", serveCmd)
}

const serveSynopsis = `--rollout-key KEY [--rollout-key ...] [--trust root.json] [--id NAME] [--http ADDR] [S3 flags] [MQTT flags]

Runs the rollout controller: it reads every device's retained status and update events from
the broker, and drives the rollouts in the bucket (rollouts/*.json, written by wasmfleet
rollout start): it signs each wave's desired state with the rollout keys, publishes it
retained on wasmfleet/groups/GROUP/desired, judges the wave from what the devices report,
and advances, or aborts and sends every device of the group back. It holds rollout keys
only: --rollout-key must name keys of the trust file's rollout role (their password from
--password-file, WASMFLEET_KEY_PASSWORD or COSIGN_PASSWORD). It keeps no state of its own:
stop it at any time and start it again (same --id: at once; another: after --lease). Logs are
JSON lines on stdout.

It also serves the dashboard on --http (default 127.0.0.1:8080; empty: none): devices,
releases and rollouts, live. Reading needs no login; pause, resume and abort need the
operator token, read from --dashboard-token-file or WASMFLEET_DASHBOARD_TOKEN (without one the
dashboard is read-only). It speaks plain HTTP: on another address than loopback, put it
behind a TLS proxy.`

func serveCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "serve", serveSynopsis)
	var keyRefs multiFlag
	fs.Var(&keyRefs, "rollout-key", "rollout key: an encrypted key file or a KMS URI; repeat for the rollout role's threshold")
	trustPath := fs.String("trust", "", "trust file the rollout keys are checked against (default: the bucket's trust/root.json)")
	pwFile := fs.String("password-file", "", "read the key password from this file")
	id := fs.String("id", "", "this controller's name in the leases it takes (default: the host name); two controllers need two names")
	lease := fs.Duration("lease", rollout.DefaultLease, "how long a rollout stays with the controller that wrote it last")
	interval := fs.Duration("interval", rollout.DefaultInterval, "how often rollouts are looked at when no device report wakes the controller")
	ttl := fs.Duration("desired-ttl", rollout.DefaultDesiredTTL, "how long a signed desired state is valid (re-signed at half of it)")
	syncIdle := fs.Duration("sync-idle", controller.DefaultSyncIdle, "the retained statuses are all in once none has arrived for this long")
	syncMax := fs.Duration("sync-max", controller.DefaultSyncMax, "the longest wait for the retained statuses before driving rollouts")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	httpAddr := fs.String("http", defaultHTTPAddr, "serve the dashboard on this address (host:port); empty: no dashboard")
	tokenFile := fs.String("dashboard-token-file", "", "read the dashboard's operator token from this file (or set "+dashboardTokenEnv+"); none: read-only")
	s3 := addS3Flags(fs)
	mf := addMQTTFlags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 0 || len(keyRefs) == 0 {
		return usagef("serve needs --rollout-key and no arguments (usage: wasmfleet serve %s)", strings.SplitN(serveSynopsis, "\n", 2)[0])
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
		return usagef("--log-level %q: want debug, info, warn or error", *level)
	}
	for name, d := range map[string]time.Duration{"--lease": *lease, "--interval": *interval, "--desired-ttl": *ttl,
		"--sync-idle": *syncIdle, "--sync-max": *syncMax} {
		if d <= 0 {
			return usagef("%s must be positive", name)
		}
	}
	token, err := dashboardToken(*httpAddr, *tokenFile)
	if err != nil {
		return err
	}
	mcfg, err := mf.controllerConfig()
	if err != nil {
		return err
	}
	scfg, err := s3.config()
	if err != nil {
		return err
	}
	store, err := controller.OpenStore(scfg)
	if err != nil {
		return opError{"s3", err}
	}
	// A daemon's log: JSON lines on stdout, as the agent writes them, for journald.
	log := zerolog.New(env.Stdout).Level(lvl).With().Timestamp().Logger()
	trust, err := loadTrust(ctx, env, *trustPath, s3)
	if err != nil {
		return err
	}
	signers, ids, err := loadSigners(ctx, env, keyRefs, *pwFile)
	if err != nil {
		return err
	}
	if err := controller.CheckSigners(ctx, trust, signers); err != nil {
		return refused(err)
	}
	// Decrypting a key file runs scrypt (N=32768, r=8: 32 MiB), which would otherwise stay
	// in the daemon's RSS long after: give it back now.
	debug.FreeOSMemory()
	srv, err := controller.New(controller.Config{
		Store: store, MQTT: mcfg, Topics: report.Topics{Prefix: *mf.prefix}, Signers: signers, ID: *id,
		Lease: *lease, Interval: *interval, DesiredTTL: *ttl, SyncIdle: *syncIdle, SyncMax: *syncMax, Log: log,
		NoFleet: *httpAddr == "",
	})
	if err != nil {
		return usagef("%v", err)
	}
	if *httpAddr != "" {
		stop, err := startDashboard(ctx, env, *httpAddr, token, srv, s3, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info().Str("id", srv.Controller().ID()).Str("bucket", store.Bucket()).Strs("brokers", mcfg.Brokers).
		Str("rollout_keys", shortIDs(ids)).Uint64("trust_version", trust.Version()).Msg("rollout controller starting")
	// Started, for systemd (Type=notify): keys, trust and bucket are checked and the
	// dashboard listens; the broker may still be coming up, which Run waits out.
	stopNotify := notifySystemd(ctx, log)
	defer stopNotify()
	if err := srv.Run(ctx); err != nil {
		return opError{"serve", err}
	}
	st := srv.Stats()
	log.Info().Uint64("published", st.Published).Uint64("statuses", st.Feed.Statuses).Uint64("events", st.Feed.Events).
		Uint64("malformed", st.Feed.Malformed).Msg("rollout controller stopped")
	return nil
}

// notifySystemd tells systemd the service is ready, feeds its watchdog until the returned
// function is called, and says STOPPING when ctx ends (SIGINT or SIGTERM). Outside systemd
// it does nothing.
func notifySystemd(ctx context.Context, log zerolog.Logger) (stop func()) {
	warn := func(err error) { log.Warn().Err(err).Msg("systemd notification") }
	if err := sdnotify.Ready(); err != nil {
		warn(err)
	}
	live, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		<-live.Done()
		if ctx.Err() != nil { // a signal, not a failed Run
			if err := sdnotify.Stopping(); err != nil {
				warn(err)
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if err := sdnotify.KeepAlive(live, warn); err != nil {
			warn(err)
		}
	}()
	return func() { cancel(); <-done; <-done }
}

// loadTrust reads the trust file at path, or the bucket's trust/root.json when path is "".
func loadTrust(ctx context.Context, env *Env, path string, s3 *s3Flags) (*signing.Trust, error) {
	if path != "" {
		b, err := readFile("--trust", path)
		if err != nil {
			return nil, opError{"trust", err}
		}
		t, err := signing.ParseTrust(b)
		if err != nil {
			return nil, refused(fmt.Errorf("%s: %w", path, err))
		}
		return t, nil
	}
	bucket, err := s3.open(env)
	if err != nil {
		return nil, err
	}
	t, err := bucket.Trust(ctx)
	switch {
	case errors.Is(err, publish.ErrNoTrust):
		return nil, opError{"trust", fmt.Errorf("no --trust given and %s", err)}
	case err != nil && signing.KindOf(err) != nil:
		return nil, refused(err)
	case err != nil:
		return nil, opError{"s3", err}
	}
	return t, nil
}

// config is the bucket's configuration from the flags (s3Flags.open, without opening).
func (f *s3Flags) config() (publish.Config, error) {
	secret, err := f.secretKey()
	if err != nil {
		return publish.Config{}, opError{"s3", err}
	}
	cfg := publish.Config{Endpoint: *f.endpoint, Bucket: *f.bucket, Region: *f.region,
		AccessKey: *f.accessKey, SecretKey: secret, Insecure: *f.insecure, CAFile: *f.ca}
	if err := cfg.Validate(); err != nil {
		return publish.Config{}, usagef("%v (flags --s3-endpoint, --bucket, --s3-access-key; env %s, %s, %s, %s)",
			err, s3EndpointEnv, s3BucketEnv, s3AccessKeyEnv, s3SecretKeyEnv)
	}
	return cfg, nil
}

// controllerConfig is the long-lived, reconnecting session of the controller, from the same
// flags and environment as mqttFlags.connect's short one.
func (f *mqttFlags) controllerConfig() (controller.MQTTConfig, error) {
	var c controller.MQTTConfig
	for b := range strings.SplitSeq(*f.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if len(c.Brokers) == 0 {
		return c, usagef("no broker: give --broker URL (or set %s)", mqttBrokersEnv)
	}
	password, err := f.password()
	if err != nil {
		return c, opError{"mqtt", err}
	}
	if password != "" && *f.username == "" {
		return c, usagef("%s is set but no --username (or %s) is given", mqttPasswordEnv, mqttUserEnv)
	}
	if (*f.cert == "") != (*f.key == "") {
		return c, usagef("--cert and --key go together")
	}
	c.Username, c.Password, c.ConnectTimeout = *f.username, password, *f.timeout
	if *f.ca != "" || *f.cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.ca != "" {
			pem, err := readFile("--ca", *f.ca)
			if err != nil {
				return c, opError{"mqtt", err}
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return c, opError{"mqtt", fmt.Errorf("--ca %s holds no PEM certificate", *f.ca)}
			}
		}
		if *f.cert != "" {
			cert, err := tls.LoadX509KeyPair(*f.cert, *f.key)
			if err != nil {
				return c, opError{"mqtt", fmt.Errorf("client certificate: %w", err)}
			}
			t.Certificates = []tls.Certificate{cert}
		}
		c.TLS = t
	}
	return c, nil
}

// The dashboard of `wasmfleet serve`.
const (
	defaultHTTPAddr   = "127.0.0.1:8080"
	dashboardTokenEnv = "WASMFLEET_DASHBOARD_TOKEN"
)

// dashboardToken reads the operator token from the file named by --dashboard-token-file or
// from the environment, never from a flag's value (it would show in ps).
func dashboardToken(addr, file string) (string, error) {
	env := os.Getenv(dashboardTokenEnv)
	switch {
	case file != "" && env != "":
		return "", usagef("--dashboard-token-file and %s both give the dashboard's token; give one", dashboardTokenEnv)
	case addr == "" && (file != "" || env != ""):
		return "", usagef("a dashboard token is given but --http is empty (no dashboard)")
	case file == "":
		return env, nil
	}
	b, err := readFile("--dashboard-token-file", file)
	if err != nil {
		return "", opError{"dashboard", err}
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", usagef("--dashboard-token-file %s is empty", file)
	}
	return token, nil
}

// startDashboard listens on addr and serves the dashboard until ctx ends or stop is called
// (which waits for the server to finish).
func startDashboard(ctx context.Context, env *Env, addr, token string, srv *controller.Server, s3 *s3Flags, log zerolog.Logger) (stop func(), err error) {
	bucket, err := s3.open(env)
	if err != nil {
		return nil, err
	}
	d, err := dashboard.New(dashboard.Config{Server: srv, Bucket: bucket, Token: token, Log: log})
	if err != nil {
		return nil, usagef("%v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, opError{"http", fmt.Errorf("dashboard: %w", err)}
	}
	// Requests end with the server: the event streams would otherwise hold Shutdown up.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	hs := &http.Server{
		Handler:           d,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          stdlog.New(log.With().Str("component", "http").Logger(), "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("dashboard stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		cancel()
	}()
	ev := log.Info()
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
		ev = log.Warn().Str("note", "plain HTTP on a non-loopback address: the token and the session cookie cross the network in clear; put a TLS proxy in front")
	}
	ev.Str("url", "http://"+ln.Addr().String()+"/").Bool("read_only", token == "").Msg("dashboard listening")
	return func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
		<-done
	}, nil
}
