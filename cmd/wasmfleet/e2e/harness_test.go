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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/cli"
	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/internal/testenv/fleetenv"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
)

// keyPassword encrypts the rollout key file `wasmfleet serve` reads.
const keyPassword = fleetenv.KeyPassword

// world is a fleet (internal/testenv/fleetenv: Mosquitto and versitygw on loopback ports,
// a bucket with the trust file, the keys of the three roles, a Store with write
// credentials, read-only credentials for the agents) and an observer that records every
// message on the broker. Its lower-case fields are the fleet's, under the names these
// tests use.
type world struct {
	*fleetenv.World
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
	f := fleetenv.New(t, &fleetenv.Options{MosquittoConfig: o.MosquittoConfig})
	w := &world{World: f, t: t, mq: f.MQ, s3: f.S3, bucket: f.Bucket, readKey: f.ReadKey, readSec: f.ReadSecret,
		release: f.Release, rolloutPriv: f.RolloutPriv, rollout: f.Rollout, trust: f.Trust, trustEnv: f.TrustEnv,
		dir: f.Dir, store: f.Store, pub: f.Pub, msgs: map[string][][]byte{}}
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

func (w *world) writeFile(name string, data []byte) string {
	w.t.Helper()
	return w.WriteFile(name, data)
}

// publishRelease signs wasm under the manifest with the release key and publishes both with
// fleet/publish, as `wasmfleet publish` does.
func (w *world) publishRelease(manifestYAML string, wasm []byte) signing.ReleaseRef {
	w.t.Helper()
	return w.PublishRelease(manifestYAML, wasm)
}

// thresholdAlert is the example module at version, triggered by the device's own readings
// only (fleetenv.ThresholdAlert).
func thresholdAlert(t testing.TB, version string) (string, []byte) {
	t.Helper()
	return fleetenv.ThresholdAlert(t, version)
}

// trapWasm is the sandbox's hostile module that traps on every event.
func trapWasm(t testing.TB) []byte { t.Helper(); return fleetenv.TrapWasm(t) }

// agentOptions adjust agentConfig.
type agentOptions = fleetenv.AgentOptions

// agentConfig is a device in groups (fleetenv.World.AgentConfig: a health window of 2
// events or 2s, so that waves pass quickly).
func (w *world) agentConfig(id string, o *agentOptions, groups ...string) *config.Config {
	w.t.Helper()
	return w.AgentConfig(id, o, groups...)
}

// startAgent runs a real agent in this process until the test ends.
func (w *world) startAgent(cfg *config.Config) { w.t.Helper(); w.StartAgent(cfg) }

// startAgents starts n agents named prefix-1 ... prefix-n in group.
func (w *world) startAgents(prefix string, n int, group string) []string {
	w.t.Helper()
	return w.StartAgents(prefix, n, group)
}

// controllerConfig is a controller on the world's servers, ticking often.
func (w *world) controllerConfig(id string) controller.Config { return w.ControllerConfig(id) }

// runController runs a controller until stop (or the end of the test); stop waits for Run to
// return.
func (w *world) runController(cfg controller.Config) (srv *controller.Server, stop func()) {
	w.t.Helper()
	return w.RunController(cfg)
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
	return fleetenv.PickRolloutID(t, prefix, devices, waves, want)
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

// sensors publishes a reading for each device every 100ms until stop (or the test's end).
func (w *world) sensors(devices []string) (stop func()) {
	stop = publishReadings(w.obs, 1, devices)
	w.t.Cleanup(stop)
	return stop
}

// publishReadings publishes a reading over the threshold for each device through c every
// 100ms until stop.
func publishReadings(c mqtt.Client, qos byte, devices []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for _, d := range devices {
				c.Publish("sensors/"+d+"/temperature", qos, false, []byte(`{"value": 35}`))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	fleetenv.WaitFor(t, timeout, cond, what)
}
