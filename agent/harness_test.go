package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// fleet is the world around an agent under test: a real Mosquitto and a real versitygw on
// loopback ports, a trust file with its keys, and an MQTT client playing the controller and
// the sensors. Tests sign and upload releases, publish desired state, and watch what the
// agent publishes.
type fleet struct {
	t        *testing.T
	mq       *testenv.Mosquitto
	s3       *testenv.S3
	bucket   string
	readKey  string
	readSec  string
	root     signature.SignerVerifier
	release  signature.SignerVerifier
	rollout  signature.SignerVerifier
	stranger signature.SignerVerifier
	trustEnv []byte
	dir      string
	client   mqtt.Client
	seq      map[string]uint64
	pki      *testenv.PKI

	mu   sync.Mutex
	msgs map[string][][]byte // by topic, every message the test client saw

	secrets *secretScan        // what agents may never write (secrets_test.go)
	procs   []*testenv.Process // agent processes, whose output is scanned for secrets
}

func newFleet(t *testing.T) *fleet { t.Helper(); return newFleetWith(t, nil) }

// newFleetWith starts the fleet's servers with TLS from pki when it is not nil: Mosquitto
// with a TLS listener that requires a client certificate (mTLS) and a password, versitygw
// over https. The test client still uses the plain listener, as user "controller".
func newFleetWith(t *testing.T, pki *testenv.PKI) *fleet {
	t.Helper()
	return newFleetFull(t, pki, nil)
}

// fastBroker is a Mosquitto configuration for tests of throughput: the fleet's broker saves
// its database after every change, which tests of redelivery need and which caps it at a
// few hundred messages a second; this keeps Mosquitto's default (saved every 30 minutes), as
// a deployed broker does.
var fastBroker = &testenv.MosquittoOptions{Config: "autosave_on_changes false\nautosave_interval 1800\n"}

// newFleetFull is newFleetWith whose plain (pki nil) Mosquitto is started with mq.
func newFleetFull(t *testing.T, pki *testenv.PKI, mq *testenv.MosquittoOptions) *fleet {
	t.Helper()
	f := &fleet{t: t, bucket: "wasmfleet", dir: t.TempDir(), seq: map[string]uint64{}, msgs: map[string][][]byte{}, pki: pki,
		secrets: newSecretScan()}
	// Registered first, so run last: after every agent of the test has stopped.
	t.Cleanup(f.checkSecrets)
	if pki != nil {
		f.mq = testenv.StartMosquitto(t, &testenv.MosquittoOptions{PKI: pki, RequireClientCert: true,
			Users: map[string]string{"controller": "controller-pw", "pi-tls": "device-pw"}})
		f.s3 = testenv.StartS3(t, &testenv.S3Options{PKI: pki})
	} else {
		f.mq = testenv.StartMosquitto(t, mq)
		f.s3 = testenv.StartS3(t, nil)
	}
	f.s3.MakeBucket(f.bucket)
	f.readKey, f.readSec = f.s3.ReadOnlyUser(f.bucket)
	f.secrets.add("the S3 secret key of the agents", f.readSec)
	f.secrets.add("the S3 root secret key", f.s3.SecretKey)
	if pki != nil {
		f.secrets.add("the device's MQTT password", "device-pw")
		f.secrets.add("the controller's MQTT password", "controller-pw")
		f.secrets.addPEMFile(t, "the client certificate's private key", pki.ClientKeyFile)
		f.secrets.addPEMFile(t, "the server certificate's private key", pki.ServerKeyFile)
	}

	f.root, f.release, f.rollout, f.stranger = signingtest.NewSigner(t), signingtest.NewSigner(t), signingtest.NewSigner(t), signingtest.NewSigner(t)
	f.trustEnv = signingtest.Trust(t, 1, f.root, f.release, f.rollout)

	o := mqtt.NewClientOptions().AddBroker(f.mq.URL()).SetClientID("test-controller").SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			f.mu.Lock()
			f.msgs[m.Topic()] = append(f.msgs[m.Topic()], m.Payload())
			f.mu.Unlock()
		}).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe("#", 1, nil)
		})
	if pki != nil {
		o.SetUsername("controller").SetPassword("controller-pw")
	}
	f.client = mqtt.NewClient(o)
	if tok := f.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test client: %v", tok.Error())
	}
	t.Cleanup(func() { f.client.Disconnect(100) })
	return f
}

// put uploads an object with the root credentials.
func (f *fleet) put(key string, data []byte) {
	f.t.Helper()
	f.s3.Put(f.bucket, key, data)
}

// publishRelease signs wasm with the manifest by signers (the release key when none) and
// uploads both; it returns the ref a desired state names.
func (f *fleet) publishRelease(manifestYAML string, wasm []byte, signers ...signature.Signer) signing.ReleaseRef {
	f.t.Helper()
	m, err := modules.Parse([]byte(manifestYAML))
	if err != nil {
		f.t.Fatal(err)
	}
	if len(signers) == 0 {
		signers = []signature.Signer{f.release}
	}
	env, err := signing.SignRelease(context.Background(), m, strings.NewReader(string(wasm)), signers...)
	if err != nil {
		f.t.Fatal(err)
	}
	rk, _ := objects.ReleaseKey(m.Name, m.Version)
	mk, _ := objects.ModuleKey(m.Name, m.Version)
	f.put(mk, wasm)
	f.put(rk, env)
	sha, size, err := signing.HashModule(strings.NewReader(string(wasm)))
	if err != nil {
		f.t.Fatal(err)
	}
	return signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: sha, Size: size}
}

// desiredDoc builds the next desired state of a group.
func (f *fleet) desiredDoc(group string, targets ...signing.ModuleTarget) *signing.Desired {
	f.seq[group]++
	return &signing.Desired{Target: signing.Target{Group: group}, Sequence: f.seq[group],
		Expires: time.Now().Add(time.Hour), Modules: targets}
}

// publishDesired signs d (with the rollout key unless signers are given) and publishes it
// retained on the group's topic.
func (f *fleet) publishDesired(d *signing.Desired, signers ...signature.Signer) []byte {
	f.t.Helper()
	if len(signers) == 0 {
		signers = []signature.Signer{f.rollout}
	}
	env, err := signing.Sign(context.Background(), signing.DesiredPayloadType, mustJSON(f.t, d), signers...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.publishRaw(report.Topics{}.GroupDesired(d.Target.Group), env, true)
	return env
}

func (f *fleet) publishRaw(topic string, payload []byte, retained bool) {
	f.t.Helper()
	tok := f.client.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		f.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// everyone is a module target for every device (wave 100%).
func everyone(ref signing.ReleaseRef, rollout string) signing.ModuleTarget {
	return signing.ModuleTarget{Release: ref, Rollout: rollout, WavePercent: 100}
}

// agentConfig is a configuration for device id in groups, pointing at the fleet's servers.
func (f *fleet) agentConfig(id string, groups ...string) *config.Config {
	f.t.Helper()
	dir := filepath.Join(f.dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	trust := filepath.Join(dir, "root.json")
	if err := os.WriteFile(trust, f.trustEnv, 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg := &config.Config{DeviceID: id, Groups: groups, TrustRoot: trust, DataDir: filepath.Join(dir, "data")}
	cfg.MQTT.Brokers = []string{f.mq.URL()}
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.Insecure = f.s3.Endpoint(), f.bucket, true
	cfg.S3.AccessKey, cfg.S3.SecretKey = f.readKey, config.Secret(f.readSec)
	cfg.StatusInterval = modules.Duration(time.Second)
	cfg.Health.Events, cfg.Health.Window, cfg.Health.MaxFailureRatio = 5, modules.Duration(time.Minute), 0.5
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// startAgent runs an agent in this process until the test ends (or stop is called).
func (f *fleet) startAgent(cfg *config.Config) (a *Agent, stop func()) {
	f.t.Helper()
	log := f.agentLogger(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, log)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("agent: %v", err)
			}
			a.Close()
		})
	}
	f.t.Cleanup(stop)
	return a, stop
}

// messages returns what the test client received on a topic so far.
func (f *fleet) messages(topic string) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.msgs[topic]...)
}

// events returns the lifecycle events a device reported so far.
func (f *fleet) events(device string) []report.Event {
	var out []report.Event
	for _, b := range f.messages(report.Topics{}.Events(device)) {
		e, err := report.ParseEvent(b)
		if err != nil {
			f.t.Fatalf("agent published a malformed event: %v\n%s", err, b)
		}
		out = append(out, *e)
	}
	return out
}

// waitEvent waits for an event of kind about version and returns it.
func (f *fleet) waitEvent(device, kind, version string) report.Event {
	f.t.Helper()
	var got report.Event
	waitFor(f.t, 30*time.Second, func() bool {
		for _, e := range f.events(device) {
			if e.Kind == kind && (version == "" || e.Version == version) {
				got = e
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("a %s event for %q; events so far: %+v", kind, version, f.events(device))
	})
	return got
}

// lastStatus is the newest status a device published.
func (f *fleet) lastStatus(device string) *report.Status {
	msgs := f.messages(report.Topics{}.Status(device))
	if len(msgs) == 0 {
		return nil
	}
	s, err := report.ParseStatus(msgs[len(msgs)-1])
	if err != nil {
		f.t.Fatalf("agent published a malformed status: %v", err)
	}
	return s
}

// waitStatus waits until the device's status satisfies ok.
func (f *fleet) waitStatus(device string, ok func(*report.Status) bool, what string) *report.Status {
	f.t.Helper()
	var s *report.Status
	waitFor(f.t, 30*time.Second, func() bool {
		s = f.lastStatus(device)
		return s != nil && ok(s)
	}, func() string { return fmt.Sprintf("status %s; last: %+v", what, f.lastStatus(device)) })
	return s
}

// moduleStatus finds a module in a status.
func moduleStatus(s *report.Status, name string) (report.ModuleStatus, bool) {
	for _, m := range s.Modules {
		if m.Name == name {
			return m, true
		}
	}
	return report.ModuleStatus{}, false
}

// waitFor polls cond every few milliseconds until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// example reads a committed example module and its manifest.
func example(t testing.TB, name, file string) (string, []byte) {
	t.Helper()
	dir := filepath.Join("..", "modules", "examples", name)
	m, err := os.ReadFile(filepath.Join(dir, "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(m), w
}

// hostileWasm reads a module of the sandbox's hostile suite.
func hostileWasm(t testing.TB, name string) []byte {
	t.Helper()
	w, err := os.ReadFile(filepath.Join("sandbox", "testdata", "hostile", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}
