// Package e2e tests the fleet side end to end: the rollout controller (fleet/controller,
// `wasmfleet serve`) and the operator's `wasmfleet rollout` against a real Mosquitto and a
// real versitygw, with real agents (agent.New and Start, in this process, each with its own
// MQTT session and data directory) installing, judging and rolling back real modules.
// It holds tests only.
package e2e

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent"
	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/cli"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// keyPassword encrypts the rollout key file `wasmfleet serve` reads.
const keyPassword = "e2e rollout key"

// world is a fleet: Mosquitto and versitygw on loopback ports, a bucket with the trust file,
// the keys of the three roles, a Store with write credentials (the controller's and the
// operator's), read-only credentials for the agents, and an observer that records every
// message on the broker.
type world struct {
	t                *testing.T
	mq               *testenv.Mosquitto
	s3               *testenv.S3
	bucket           string
	readKey, readSec string
	release          signature.Signer
	rolloutPriv      crypto.Signer
	rollout          signature.Signer
	trust            *signing.Trust
	trustEnv         []byte
	dir              string
	store            *controller.Store
	pub              *publish.Bucket
	topics           report.Topics
	obs              mqtt.Client

	mu   sync.Mutex
	msgs map[string][][]byte
}

// worldOptions adjust newWorld.
type worldOptions struct {
	// NoObserver: do not record the broker's traffic (the scale test counts it instead).
	NoObserver bool
	// MosquittoConfig is added to the broker's configuration.
	MosquittoConfig string
}

func newWorld(t *testing.T, o *worldOptions) *world {
	t.Helper()
	if o == nil {
		o = &worldOptions{}
	}
	w := &world{t: t, bucket: "fleet", dir: t.TempDir(), msgs: map[string][][]byte{}}
	w.mq = testenv.StartMosquitto(t, &testenv.MosquittoOptions{Config: "max_queued_messages 100000\n" + o.MosquittoConfig})
	w.s3 = testenv.StartS3(t, nil)
	w.s3.MakeBucket(w.bucket)
	w.readKey, w.readSec = w.s3.ReadOnlyUser(w.bucket)

	root := newSigner(t)
	w.release = newSigner(t)
	var err error
	if w.rolloutPriv, err = keys.Generate(keys.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if w.rollout, err = keys.Signer(w.rolloutPriv); err != nil {
		t.Fatal(err)
	}
	tf := &signing.TrustFile{Version: 1, Expires: time.Now().Add(365 * 24 * time.Hour), Keys: map[string]signing.TrustKey{}}
	role := func(s signature.Signer) signing.Role {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		id, k, err := signing.NewTrustKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		tf.Keys[id] = k
		return signing.Role{KeyIDs: []string{id}, Threshold: 1}
	}
	tf.Roles.Root, tf.Roles.Release, tf.Roles.Rollout = role(root), role(w.release), role(w.rollout)
	if w.trustEnv, err = signing.SignTrust(context.Background(), tf, root); err != nil {
		t.Fatal(err)
	}
	if w.trust, err = signing.ParseTrust(w.trustEnv); err != nil {
		t.Fatal(err)
	}
	w.writeFile("root.json", w.trustEnv)
	pemKey, err := keys.MarshalPrivate(w.rolloutPriv, []byte(keyPassword))
	if err != nil {
		t.Fatal(err)
	}
	w.writeFile("rollout.key", pemKey)

	cfg := publish.Config{Endpoint: w.s3.Endpoint(), Bucket: w.bucket, Region: w.s3.Region,
		AccessKey: w.s3.AccessKey, SecretKey: w.s3.SecretKey, Insecure: true}
	if w.store, err = controller.OpenStore(cfg); err != nil {
		t.Fatal(err)
	}
	if w.pub, err = publish.Open(cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.pub.PublishTrust(context.Background(), w.trust); err != nil {
		t.Fatal(err)
	}
	// The CLI takes the secret key from the environment only, as in production.
	t.Setenv("WASMFLEET_S3_SECRET_KEY", w.s3.SecretKey)
	t.Setenv("WASMFLEET_KEY_PASSWORD", keyPassword)
	t.Setenv("WASMFLEET_MQTT_BROKERS", "")

	if !o.NoObserver {
		opts := mqtt.NewClientOptions().AddBroker(w.mq.URL()).SetClientID("e2e-observer").SetCleanSession(true).
			SetOrderMatters(true).
			SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
				w.mu.Lock()
				w.msgs[m.Topic()] = append(w.msgs[m.Topic()], slices.Clone(m.Payload()))
				w.mu.Unlock()
			}).
			SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("#", 1, nil) })
		w.obs = mqtt.NewClient(opts)
		if tok := w.obs.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("observer: %v", tok.Error())
		}
		t.Cleanup(func() { w.obs.Disconnect(100) })
	}
	return w
}

func newSigner(t testing.TB) signature.SignerVerifier {
	t.Helper()
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (w *world) writeFile(name string, data []byte) string {
	w.t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// publishRelease signs wasm under the manifest with the release key and publishes both with
// fleet/publish, as `wasmfleet publish` does.
func (w *world) publishRelease(manifestYAML string, wasm []byte) signing.ReleaseRef {
	w.t.Helper()
	m, err := modules.Parse([]byte(manifestYAML))
	if err != nil {
		w.t.Fatal(err)
	}
	env, err := signing.SignRelease(context.Background(), m, bytes.NewReader(wasm), w.release)
	if err != nil {
		w.t.Fatal(err)
	}
	res, err := w.pub.Publish(context.Background(), &signing.Verifier{Trust: w.trust}, env, wasm, publish.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	return signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: res.Release.SHA256, Size: res.Release.Size}
}

// thresholdAlert is the example module with its manifest at version, triggered by the
// device's own readings only (sensors/{device}/temperature), so that a test chooses which
// devices see events.
func thresholdAlert(t testing.TB, version string) (string, []byte) {
	t.Helper()
	dir := filepath.Join("..", "..", "modules", "examples", "threshold-alert")
	m, err := os.ReadFile(filepath.Join(dir, "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "threshold-alert.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ms := strings.Replace(string(m), "version: 1.0.0", "version: "+version, 1)
	ms = strings.Replace(ms, "sensors/+/temperature", "sensors/{device}/temperature", 1)
	if !strings.Contains(ms, "sensors/{device}/temperature") {
		t.Fatal("the threshold-alert manifest changed: its trigger is not sensors/+/temperature")
	}
	return ms, wasm
}

// trapWasm is the sandbox's hostile module that traps on every event.
func trapWasm(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "agent", "sandbox", "testdata", "hostile", "trap.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// agentOptions adjust agentConfig.
type agentOptions struct {
	HealthEvents   int
	HealthWindow   time.Duration
	StatusInterval time.Duration
}

// agentConfig is a device in groups, pointing at the world's servers with read-only S3
// credentials. The health window is short (2 events or 2s) so that waves pass quickly.
func (w *world) agentConfig(id string, o *agentOptions, groups ...string) *config.Config {
	w.t.Helper()
	if o == nil {
		o = &agentOptions{}
	}
	dir := filepath.Join(w.dir, "devices", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		w.t.Fatal(err)
	}
	trust := filepath.Join(dir, "root.json")
	if err := os.WriteFile(trust, w.trustEnv, 0o600); err != nil {
		w.t.Fatal(err)
	}
	cfg := &config.Config{DeviceID: id, Groups: groups, TrustRoot: trust, DataDir: filepath.Join(dir, "data")}
	cfg.MQTT.Brokers = []string{w.mq.URL()}
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.Insecure = w.s3.Endpoint(), w.bucket, true
	cfg.S3.AccessKey, cfg.S3.SecretKey = w.readKey, config.Secret(w.readSec)
	cfg.StatusInterval = modules.Duration(orDefault(o.StatusInterval, 5*time.Second))
	cfg.Health.Events = max(o.HealthEvents, 2)
	cfg.Health.Window = modules.Duration(orDefault(o.HealthWindow, 2*time.Second))
	cfg.Health.MaxFailureRatio = 0.5
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// startAgent runs a real agent in this process until the test ends.
func (w *world) startAgent(cfg *config.Config) {
	w.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(w.t)).Level(zerolog.WarnLevel).With().Str("device", cfg.DeviceID).Logger()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		cancel()
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	w.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			w.t.Errorf("agent %s: %v", cfg.DeviceID, err)
		}
		a.Close()
	})
}

// startAgents starts n agents named prefix-1 ... prefix-n in group.
func (w *world) startAgents(prefix string, n int, group string) []string {
	w.t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i+1)
		w.startAgent(w.agentConfig(ids[i], nil, group))
	}
	return ids
}

// controllerConfig is a controller on the world's servers, ticking often.
func (w *world) controllerConfig(id string) controller.Config {
	return controller.Config{
		Store: w.store, MQTT: controller.MQTTConfig{Brokers: []string{w.mq.URL()}, ClientID: "e2e-" + id},
		Signers: []signature.Signer{w.rollout}, ID: id,
		Interval: 500 * time.Millisecond, MinInterval: 50 * time.Millisecond,
		SyncIdle: 300 * time.Millisecond, SyncMax: 10 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(w.t)).Level(zerolog.InfoLevel).With().Str("controller", id).Logger(),
	}
}

// runController runs a controller until stop (or the end of the test); stop waits for Run to
// return.
func (w *world) runController(cfg controller.Config) (srv *controller.Server, stop func()) {
	w.t.Helper()
	srv, err := controller.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				w.t.Errorf("controller %s: %v", cfg.ID, err)
			}
		})
	}
	w.t.Cleanup(stop)
	waitFor(w.t, 15*time.Second, srv.Synced, func() string { return "the controller to read the retained statuses" })
	return srv, stop
}

// cli runs the wasmfleet CLI with the bucket's flags appended.
func (w *world) cli(args ...string) (code int, stdout, stderr string) {
	return w.cliCtx(context.Background(), args...)
}

func (w *world) cliCtx(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	args = append(slices.Clone(args), "--s3-endpoint", w.s3.Endpoint(), "--bucket", w.bucket, "--s3-insecure",
		"--s3-access-key", w.s3.AccessKey, "--region", w.s3.Region)
	var out, errb bytes.Buffer
	code = cli.Main(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (w *world) mustCLI(args ...string) string {
	w.t.Helper()
	code, out, errs := w.cli(args...)
	if code != 0 {
		w.t.Fatalf("wasmfleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// doc reads a rollout document from the bucket.
func (w *world) doc(id string) *rollout.Rollout {
	w.t.Helper()
	key, err := objects.RolloutKey(id)
	if err != nil {
		w.t.Fatal(err)
	}
	b, _, err := w.store.Get(context.Background(), key)
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := rollout.Parse(b)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// waitState waits until the rollout is in state with its desired state published.
func (w *world) waitState(id string, state rollout.State, timeout time.Duration) *rollout.Rollout {
	w.t.Helper()
	var r *rollout.Rollout
	waitFor(w.t, timeout, func() bool {
		r = w.doc(id)
		return r.State == state && r.Published
	}, func() string { return fmt.Sprintf("rollout %s %s and published; it is %+v", id, state, r) })
	return r
}

// messages returns what the observer received on a topic.
func (w *world) messages(topic string) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs[topic])
}

// lastStatus is the newest status a device published.
func (w *world) lastStatus(device string) *report.Status {
	msgs := w.messages(w.topics.Status(device))
	if len(msgs) == 0 {
		return nil
	}
	s, err := report.ParseStatus(msgs[len(msgs)-1])
	if err != nil {
		w.t.Fatalf("device %s published a malformed status: %v", device, err)
	}
	return s
}

// events are the lifecycle events a device reported.
func (w *world) events(device string) []report.Event {
	var out []report.Event
	for _, b := range w.messages(w.topics.Events(device)) {
		e, err := report.ParseEvent(b)
		if err != nil {
			w.t.Fatalf("device %s published a malformed event: %v", device, err)
		}
		out = append(out, *e)
	}
	return out
}

func moduleOf(s *report.Status, name string) (report.ModuleStatus, bool) {
	if s == nil {
		return report.ModuleStatus{}, false
	}
	for _, m := range s.Modules {
		if m.Name == name {
			return m, true
		}
	}
	return report.ModuleStatus{}, false
}

// runs reports whether the device's last status has module at version, in a state that
// is not failed or downloading (active, or rolled back to it).
func (w *world) runs(device, module, version string, states ...string) bool {
	m, ok := moduleOf(w.lastStatus(device), module)
	if !ok || m.Version != version {
		return false
	}
	if len(states) == 0 {
		states = []string{report.StateActive}
	}
	return slices.Contains(states, m.State)
}

// waitAllRun waits until every device reports module at version in one of states.
func (w *world) waitAllRun(devices []string, module, version string, timeout time.Duration, states ...string) {
	w.t.Helper()
	waitFor(w.t, timeout, func() bool {
		for _, d := range devices {
			if !w.runs(d, module, version, states...) {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "every device on %s %s %v; now:", module, version, states)
		for _, d := range devices {
			m, _ := moduleOf(w.lastStatus(d), module)
			fmt.Fprintf(&b, "\n  %s: %s %s %s", d, m.Version, m.State, m.Reason)
		}
		return b.String()
	})
}

// published is one desired state the observer saw on a group's topic.
type published struct {
	raw []byte
	d   signing.Desired
}

// desiredHistory decodes every desired state published on group's topic, in order. They
// were signed by the controller; the agents verify them, the test only reads them.
func (w *world) desiredHistory(group string) []published {
	w.t.Helper()
	var out []published
	for _, b := range w.messages(w.topics.GroupDesired(group)) {
		d, err := (&signing.Verifier{Trust: w.trust}).VerifyDesired(b, signing.Target{Group: group}, 0)
		if err != nil {
			w.t.Fatalf("a desired state on %s does not verify: %v", group, err)
		}
		out = append(out, published{raw: b, d: *d})
	}
	return out
}

// target is module's entry in d, if any.
func target(d *signing.Desired, module string) (signing.ModuleTarget, bool) {
	for _, m := range d.Modules {
		if m.Release.Name == module {
			return m, true
		}
	}
	return signing.ModuleTarget{}, false
}

// auditSteps returns the steps of the rollout's audit records, in key order.
func (w *world) auditSteps(id string) []uint64 {
	w.t.Helper()
	keys, err := w.store.List(context.Background(), objects.AuditPrefix)
	if err != nil {
		w.t.Fatal(err)
	}
	slices.Sort(keys)
	var steps []uint64
	for _, k := range keys {
		rid, step, err := rollout.ParseAuditKey(k)
		if err != nil {
			w.t.Fatalf("audit key %s: %v", k, err)
		}
		if rid == id {
			steps = append(steps, step)
		}
	}
	return steps
}

// auditRecord reads the audit record of a rollout's step.
func (w *world) auditRecord(id string, step uint64) rollout.AuditRecord {
	w.t.Helper()
	keys, err := w.store.List(context.Background(), objects.AuditPrefix)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, k := range keys {
		rid, s, err := rollout.ParseAuditKey(k)
		if err != nil || rid != id || s != step {
			continue
		}
		b, _, err := w.store.Get(context.Background(), k)
		if err != nil {
			w.t.Fatal(err)
		}
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			w.t.Fatal(err)
		}
		return rec
	}
	w.t.Fatalf("no audit record of step %d of %s", step, id)
	return rollout.AuditRecord{}
}

// pickID returns the first id prefix-N whose waves hold the given numbers of devices
// (cumulative, wave by wave), so that a test knows who is in which wave.
func pickID(t testing.TB, prefix string, devices []string, waves []float64, want []int) string {
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

// inWave lists the devices in a wave of a rollout.
func inWave(devices []string, id string, percent float64) []string {
	var out []string
	for _, d := range devices {
		if wave.InWave(d, id, percent) {
			out = append(out, d)
		}
	}
	return out
}

// seed rolls module ref out to 100% of group through the controller (a module new to the
// group, so no health window) and waits until every device runs it.
func (w *world) seed(ctl *rollout.Controller, id, group string, ref signing.ReleaseRef, devices []string) {
	w.t.Helper()
	if _, err := ctl.Start(context.Background(), rollout.Spec{ID: id, Release: ref, Group: group, Waves: []float64{100},
		MinDevices: 1, Timeout: time.Minute, Actor: "e2e"}); err != nil {
		w.t.Fatal(err)
	}
	w.waitAllRun(devices, ref.Name, ref.Version, 30*time.Second)
	w.waitState(id, rollout.Completed, 15*time.Second)
}

// sensors publishes a reading for each device every 100ms until stop.
func (w *world) sensors(devices []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for _, d := range devices {
				w.obs.Publish("sensors/"+d+"/temperature", 1, false, []byte(`{"value": 35}`))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	w.t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
