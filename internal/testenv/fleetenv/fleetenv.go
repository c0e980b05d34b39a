// Package fleetenv is a whole fleet for integration tests, on the real servers package
// testenv starts: Mosquitto and versitygw on loopback ports, a bucket holding a trust file
// with keys of the three roles, releases signed and published as `wasmfleet publish` does,
// real agents (agent.New and Start, in the test's process, each with its own MQTT session
// and data directory) and rollout controllers (controller.Server). cmd/wasmfleet/e2e and the
// dashboard's browser test share it.
//
// It is a separate package from testenv because it imports the agent, whose own tests
// import testenv. Methods that fail call t.Fatal: call them from the test's goroutine.
package fleetenv

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent"
	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// KeyPassword encrypts the rollout key file (World.Dir/rollout.key) `wasmfleet serve`
// reads.
const KeyPassword = "e2e rollout key"

// World is a fleet: Mosquitto and versitygw on loopback ports, a bucket with the trust
// file, the keys of the three roles, a Store and a publish.Bucket with write credentials
// (the controller's and the operator's), and read-only credentials for the agents.
type World struct {
	T  testing.TB
	MQ *testenv.Mosquitto
	S3 *testenv.S3
	// Bucket is the bucket's name; ReadKey and ReadSecret may only read it.
	Bucket              string
	ReadKey, ReadSecret string
	// Release signs releases; Rollout (and RolloutPriv, the same key) desired states.
	Release     signature.Signer
	RolloutPriv crypto.Signer
	Rollout     signature.Signer
	// Trust is the trust file (TrustEnv its signed envelope), also in the bucket and at
	// Dir/root.json; the rollout key is at Dir/rollout.key, encrypted with KeyPassword.
	Trust    *signing.Trust
	TrustEnv []byte
	Dir      string
	Store    *controller.Store
	Pub      *publish.Bucket
	// S3Config is how Store and Pub reach the bucket.
	S3Config publish.Config
}

// Options adjust New.
type Options struct {
	// MosquittoConfig is added to the broker's configuration.
	MosquittoConfig string
}

// New starts the servers and fills the bucket with the trust file. Everything stops when
// the test ends.
func New(t testing.TB, o *Options) *World {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	w := &World{T: t, Bucket: "fleet", Dir: t.TempDir()}
	w.MQ = testenv.StartMosquitto(t, &testenv.MosquittoOptions{Config: "max_queued_messages 100000\n" + o.MosquittoConfig})
	w.S3 = testenv.StartS3(t, nil)
	w.S3.MakeBucket(w.Bucket)
	w.ReadKey, w.ReadSecret = w.S3.ReadOnlyUser(w.Bucket)

	root := signingtest.NewSigner(t)
	w.Release = signingtest.NewSigner(t)
	var err error
	if w.RolloutPriv, err = keys.Generate(keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if w.Rollout, err = keys.Signer(w.RolloutPriv); err != nil {
		t.Fatal(err)
	}
	w.TrustEnv = signingtest.Trust(t, 1, root, w.Release, w.Rollout)
	if w.Trust, err = signing.ParseTrust(w.TrustEnv); err != nil {
		t.Fatal(err)
	}
	w.WriteFile("root.json", w.TrustEnv)
	pemKey, err := keys.MarshalPrivate(w.RolloutPriv, []byte(KeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	w.WriteFile("rollout.key", pemKey)

	w.S3Config = publish.Config{Endpoint: w.S3.Endpoint(), Bucket: w.Bucket, Region: w.S3.Region,
		AccessKey: w.S3.AccessKey, SecretKey: w.S3.SecretKey, Insecure: true}
	if w.Store, err = controller.OpenStore(w.S3Config); err != nil {
		t.Fatal(err)
	}
	if w.Pub, err = publish.Open(w.S3Config, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pub.PublishTrust(context.Background(), w.Trust); err != nil {
		t.Fatal(err)
	}
	return w
}

// WriteFile writes a file into Dir and returns its path.
func (w *World) WriteFile(name string, data []byte) string {
	w.T.Helper()
	p := filepath.Join(w.Dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		w.T.Fatal(err)
	}
	return p
}

// PublishRelease signs wasm under the manifest with the release key and publishes both with
// fleet/publish, as `wasmfleet publish` does.
func (w *World) PublishRelease(manifestYAML string, wasm []byte) signing.ReleaseRef {
	w.T.Helper()
	m, err := modules.Parse([]byte(manifestYAML))
	if err != nil {
		w.T.Fatal(err)
	}
	env, err := signing.SignRelease(context.Background(), m, bytes.NewReader(wasm), w.Release)
	if err != nil {
		w.T.Fatal(err)
	}
	res, err := w.Pub.Publish(context.Background(), &signing.Verifier{Trust: w.Trust}, env, wasm, publish.Options{})
	if err != nil {
		w.T.Fatal(err)
	}
	return signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: res.Release.SHA256, Size: res.Release.Size}
}

// RepoFile reads a file of the repository by its path from the repository's root.
func RepoFile(t testing.TB, path string) []byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("fleetenv: no go.mod above the test's directory")
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ThresholdAlert is the example module with its manifest at version, triggered by the
// device's own readings only (sensors/{device}/temperature), so that a test chooses which
// devices see events.
func ThresholdAlert(t testing.TB, version string) (manifestYAML string, wasm []byte) {
	t.Helper()
	m := RepoFile(t, "modules/examples/threshold-alert/manifest.yaml")
	wasm = RepoFile(t, "modules/examples/threshold-alert/threshold-alert.wasm")
	ms := strings.Replace(string(m), "version: 1.0.0", "version: "+version, 1)
	ms = strings.Replace(ms, "sensors/+/temperature", "sensors/{device}/temperature", 1)
	if !strings.Contains(ms, "sensors/{device}/temperature") {
		t.Fatal("the threshold-alert manifest changed: its trigger is not sensors/+/temperature")
	}
	return ms, wasm
}

// TrapWasm is the sandbox's hostile module that traps on every event.
func TrapWasm(t testing.TB) []byte {
	t.Helper()
	return RepoFile(t, "agent/sandbox/testdata/hostile/trap.wasm")
}

// AgentOptions adjust AgentConfig.
type AgentOptions struct {
	// HealthEvents (at least 2) and HealthWindow (default 2s) make the health window.
	HealthEvents int
	HealthWindow time.Duration
	// StatusInterval: default 5s.
	StatusInterval time.Duration
}

// AgentConfig is a device in groups, pointing at the world's servers with read-only S3
// credentials. The health window is short (2 events or 2s) so that waves pass quickly.
func (w *World) AgentConfig(id string, o *AgentOptions, groups ...string) *config.Config {
	w.T.Helper()
	if o == nil {
		o = &AgentOptions{}
	}
	dir := filepath.Join(w.Dir, "devices", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		w.T.Fatal(err)
	}
	trust := filepath.Join(dir, "root.json")
	if err := os.WriteFile(trust, w.TrustEnv, 0o600); err != nil {
		w.T.Fatal(err)
	}
	cfg := &config.Config{DeviceID: id, Groups: groups, TrustRoot: trust, DataDir: filepath.Join(dir, "data")}
	cfg.MQTT.Brokers = []string{w.MQ.URL()}
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.Insecure = w.S3.Endpoint(), w.Bucket, true
	cfg.S3.AccessKey, cfg.S3.SecretKey = w.ReadKey, config.Secret(w.ReadSecret)
	cfg.StatusInterval = modules.Duration(orDefault(o.StatusInterval, 5*time.Second))
	cfg.Health.Events = max(o.HealthEvents, 2)
	cfg.Health.Window = modules.Duration(orDefault(o.HealthWindow, 2*time.Second))
	cfg.Health.MaxFailureRatio = 0.5
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		w.T.Fatal(err)
	}
	return cfg
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// StartAgent runs a real agent in this process until the test ends.
func (w *World) StartAgent(cfg *config.Config) {
	w.T.Helper()
	log := zerolog.New(zerolog.NewTestWriter(w.T)).Level(zerolog.WarnLevel).With().Str("device", cfg.DeviceID).Logger()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		cancel()
		w.T.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	w.T.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			w.T.Errorf("agent %s: %v", cfg.DeviceID, err)
		}
		a.Close()
	})
}

// StartAgents starts n agents named prefix-1 ... prefix-n in group.
func (w *World) StartAgents(prefix string, n int, group string) []string {
	w.T.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i+1)
		w.StartAgent(w.AgentConfig(ids[i], nil, group))
	}
	return ids
}

// ControllerConfig is a controller on the world's servers, ticking often.
func (w *World) ControllerConfig(id string) controller.Config {
	return controller.Config{
		Store: w.Store, MQTT: controller.MQTTConfig{Brokers: []string{w.MQ.URL()}, ClientID: "e2e-" + id},
		Signers: []signature.Signer{w.Rollout}, ID: id,
		Interval: 500 * time.Millisecond, MinInterval: 50 * time.Millisecond,
		SyncIdle: 300 * time.Millisecond, SyncMax: 10 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(w.T)).Level(zerolog.InfoLevel).With().Str("controller", id).Logger(),
	}
}

// RunController runs a controller until stop (or the end of the test), once it has read
// the retained statuses; stop waits for Run to return.
func (w *World) RunController(cfg controller.Config) (srv *controller.Server, stop func()) {
	w.T.Helper()
	srv, err := controller.New(cfg)
	if err != nil {
		w.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				w.T.Errorf("controller %s: %v", cfg.ID, err)
			}
		})
	}
	w.T.Cleanup(stop)
	WaitFor(w.T, 15*time.Second, srv.Synced, func() string { return "the controller to read the retained statuses" })
	return srv, stop
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PickRolloutID returns the first id prefix-N whose waves hold the given numbers of devices
// (cumulative, wave by wave), so that a test knows who is in which wave.
func PickRolloutID(t testing.TB, prefix string, devices []string, waves []float64, want []int) string {
	t.Helper()
	for n := range 100000 {
		id := fmt.Sprintf("%s-%d", prefix, n)
		ok := true
		for i, p := range waves {
			c := 0
			for _, d := range devices {
				if wave.InWave(d, id, p) {
					c++
				}
			}
			if c != want[i] {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	t.Fatalf("no rollout id %s-N puts %v devices in waves %v", prefix, want, waves)
	return ""
}
