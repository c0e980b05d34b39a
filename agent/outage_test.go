package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// slowEchoWAT publishes each event's payload unchanged to out/{device}, after spinning a
// loop for a few milliseconds, so that a stream of events is still being worked through
// when the broker goes away.
const slowEchoWAT = `(module
  (import "wasmfleet" "device_id" (func $device_id (param i32 i32) (result i32)))
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "out/")
  (global $heap (mut i32) (i32.const 1024))

  (func (export "wasmfleet_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i64) (local $have i64)
    (local.set $p (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $n))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 65535))
                (i64.const 16)))))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $p))

  (func (export "wasmfleet_handle") (param $payload i32) (param $len i32) (result i32)
    (local $id i32) (local $i i32)
    (local.set $i (i32.const SPIN))
    (block $done
      (loop $spin
        (br_if $done (i32.eqz (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $spin)))
    (local.set $id (call $device_id (i32.const 20) (i32.const 256)))
    (if (i32.gt_u (local.get $id) (i32.const 256)) (then (return (i32.const 1))))
    (drop (call $publish
      (i32.const 16) (i32.add (i32.const 4) (local.get $id))
      (local.get $payload) (local.get $len)))
    (i32.const 0)))
`

// slowEchoSpin is the loop count of slowEchoWAT: some 15 ms per event, so that the 60
// events take about a second and most are still to be handled when the broker goes.
const slowEchoSpin = 20_000_000

const slowEchoManifest = `name: slow-echo
version: 1.0.0
abi: handler/v1
triggers:
  - mqtt: in/{device}
capabilities:
  publish: ["out/{device}"]
limits: { memory: 1MiB, timeout: 1s, max_publishes: 1, max_output: 1KiB, concurrency: 1 }
`

// startAgentWatched is startAgent that also returns a channel closed when Start returns,
// so a test can tell the agent never stopped by itself.
func (f *fleet) startAgentWatched(cfg *config.Config) (a *Agent, exited <-chan struct{}) {
	f.t.Helper()
	log := f.agentLogger(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, log)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	var startErr error
	go func() { startErr = a.Start(ctx); close(done) }()
	f.t.Cleanup(func() {
		cancel()
		<-done
		if startErr != nil {
			f.t.Errorf("agent: %v", startErr)
		}
		a.Close()
	})
	return a, done
}

// observer is an MQTT client with a persistent session (clean session off, QoS 1
// subscription): the broker keeps what is published for it while it is away, including
// across a broker restart, so it sees every output that reached the broker.
type observer struct {
	client mqtt.Client
	mu     sync.Mutex
	got    []string    // payloads, in arrival order, duplicates included
	at     []time.Time // when each arrived
}

func newObserver(t *testing.T, brokerURL, clientID, filter string) *observer {
	t.Helper()
	o := &observer{}
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			o.mu.Lock()
			o.got = append(o.got, string(m.Payload()))
			o.at = append(o.at, time.Now())
			o.mu.Unlock()
		})
	o.client = mqtt.NewClient(opts)
	if tok := o.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: connect: %v", tok.Error())
	}
	// Subscribed once: the session keeps the subscription across reconnects and restarts.
	if tok := o.client.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { o.client.Disconnect(100) })
	return o
}

func (o *observer) payloads() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// arrivals returns the payloads from index from on, with when each arrived.
func (o *observer) arrivals(from int) ([]string, []time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	from = min(from, len(o.got))
	return append([]string(nil), o.got[from:]...), append([]time.Time(nil), o.at[from:]...)
}

// TestBrokerRestartMidStream is scenario 4: the broker is restarted while a stream of QoS 1
// events is being worked through (some handled, some delivered to the agent and not yet
// acknowledged, the rest queued in the broker). After the agent reconnects every event has
// been handled at least once, which the outputs show: an observer with a persistent session
// receives the output of every event. The agent never stops and reports the module active.
func TestBrokerRestartMidStream(t *testing.T) {
	const device, n = "pi-4", 60
	f := newFleet(t)
	wasm := watModule(t, strings.Replace(slowEchoWAT, "SPIN", strconv.Itoa(slowEchoSpin), 1))
	ref := f.publishRelease(slowEchoManifest, wasm)
	f.publishDesired(f.desiredDoc("line", everyone(ref, "r1")))
	a, exited := f.startAgentWatched(f.agentConfig(device, "line"))
	f.waitEvent(device, report.EventActivated, "1.0.0")
	obs := newObserver(t, f.mq.URL(), "test-observer-"+device, "out/"+device)

	// The events go out at once, and every one is in the broker (PUBACK received) before
	// the broker goes: the test client's own publishes are not what is under test.
	toks := make([]mqtt.Token, n)
	for i := range n {
		toks[i] = f.client.Publish("in/"+device, 1, false, fmt.Appendf(nil, "event-%03d", i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish event %d: %v", i, tok.Error())
		}
	}
	handled := func() uint64 {
		s := a.Status()
		m, _ := moduleStatus(&s, "slow-echo")
		return m.Invocations
	}
	// The broker goes once the agent has handled about ten events: the rest are either
	// delivered to it and not yet acknowledged (queued in its runner) or still queued in
	// the broker for its persistent session.
	waitFor(t, 20*time.Second, func() bool { return handled() >= 10 },
		func() string { return fmt.Sprintf("10 events handled before the restart; got %d", handled()) })

	before := a.Status()
	connects := a.sess.connects.Load()
	outputsBefore := len(obs.payloads())
	stopAt := time.Now()
	f.mq.Stop()
	stopped := time.Since(stopAt)
	f.mq.Start()
	upAt := time.Now()
	waitFor(t, 30*time.Second, func() bool { return a.sess.connects.Load() > connects && a.sess.isConnected() },
		func() string { return "the agent to reconnect" })
	reconnect := time.Since(upAt)
	mb, _ := moduleStatus(&before, "slow-echo")
	t.Logf("broker stopped after %d outputs reached the observer (agent: %d events handled, %d outputs in its outbox); "+
		"stop took %v, agent reconnected %v after the broker was back (%v outage)",
		outputsBefore, mb.Invocations, before.Outbox, stopped.Round(time.Millisecond), reconnect.Round(time.Millisecond),
		time.Since(stopAt).Round(time.Millisecond))
	if mb.Invocations >= n/2 {
		t.Errorf("the agent had handled %d of %d events before the broker stopped: too few in flight; make the handler slower", mb.Invocations, n)
	}

	missing := func() []int {
		seen := map[string]bool{}
		for _, p := range obs.payloads() {
			seen[p] = true
		}
		var out []int
		for i := range n {
			if !seen[fmt.Sprintf("event-%03d", i)] {
				out = append(out, i)
			}
		}
		return out
	}
	waitFor(t, 30*time.Second, func() bool { return len(missing()) == 0 }, func() string {
		s := a.Status()
		m, _ := moduleStatus(&s, "slow-echo")
		return fmt.Sprintf("an output for every event; missing %v; agent status: module %+v, outbox %d, dropped %d",
			missing(), m, s.Outbox, s.OutboxDropped)
	})

	allSeen := time.Since(upAt)
	select {
	case <-exited:
		t.Fatal("the agent stopped during the broker outage")
	default:
	}

	// Let the duplicates work through before counting them: the agent is done when its
	// queue and outbox are empty and every handled event's output has arrived, and stays
	// so for a few handling times.
	a.mu.Lock()
	r := a.active["slow-echo"]
	a.mu.Unlock()
	if r == nil {
		t.Fatal("slow-echo is no longer running")
	}
	quietSince := time.Time{}
	waitFor(t, 30*time.Second, func() bool {
		idle := len(r.queue) == 0 && a.sess.queued() == 0 && uint64(len(obs.payloads())) >= r.invocations.Load()
		switch {
		case !idle:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		}
		return idle && time.Since(quietSince) >= 250*time.Millisecond
	}, func() string {
		return fmt.Sprintf("the agent to go idle: queue %d, outbox %d, %d outputs for %d invocations",
			len(r.queue), a.sess.queued(), len(obs.payloads()), r.invocations.Load())
	})
	counts := map[string]int{}
	for _, p := range obs.payloads() {
		counts[p]++
	}
	var dups []string
	for p, c := range counts {
		if c > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", p, c))
		}
	}
	sort.Strings(dups)

	s := f.waitStatus(device, func(s *report.Status) bool {
		m, ok := moduleStatus(s, "slow-echo")
		return ok && s.Online && m.Invocations == r.invocations.Load()
	}, "online with every event counted")
	m, _ := moduleStatus(s, "slow-echo")
	if m.State != report.StateActive || m.Version != "1.0.0" || m.Failures != 0 || m.Invocations < n {
		t.Fatalf("module status after the restart: %+v", m)
	}
	if s.OutboxDropped != 0 {
		t.Fatalf("the agent dropped %d outputs", s.OutboxDropped)
	}
	// Invocations beyond n are events handled twice: delivered to the agent before the
	// restart, not yet acknowledged, and delivered again after it. Queue drops are logged,
	// not failed: the redelivered copies can fill the queue while the first copies are
	// still in it (overload drops by design; every event was handled, as shown above).
	t.Logf("every event's output %v after the broker was back; in all %d invocations for %d events (%d handled twice), "+
		"%d queue drops, %d outputs at the observer (%d events output more than once: %v); p50 %dµs, p99 %dµs",
		allSeen.Round(time.Millisecond), m.Invocations, n, m.Invocations-n, m.Dropped, len(obs.payloads()), len(dups), dups,
		m.P50Micros, m.P99Micros)
}

// withCustomSection appends a custom section (id 0) named name holding size random bytes
// to a wasm module: still a valid module, and as large as a test needs.
func withCustomSection(t testing.TB, wasm []byte, name string, size int) []byte {
	t.Helper()
	leb := func(v uint64) []byte {
		var b []byte
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				b = append(b, c|0x80)
				continue
			}
			return append(b, c)
		}
	}
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.Write(leb(uint64(len(name))))
	body.WriteString(name)
	body.Write(payload)
	out := append([]byte(nil), wasm...)
	out = append(out, 0)
	out = append(out, leb(uint64(body.Len()))...)
	return append(out, body.Bytes()...)
}

// TestDownloadCutResumes is scenario 5: the S3 server is killed while a large module is
// half downloaded and started again; the agent resumes the download with a range request,
// activates the module, and fetches no more than 1.1 times its size in all. A proxy between
// the agent and versitygw counts the bytes of every answer (headers included) and slows
// the transfer so that the kill lands in the middle.
func TestDownloadCutResumes(t *testing.T) {
	const device = "pi-5"
	f := newFleet(t)
	manifest, small := example(t, "threshold-alert", "threshold-alert.wasm")
	wasm := withCustomSection(t, small, "padding", 12<<20)
	size := int64(len(wasm))
	sum := sha256.Sum256(wasm)
	ref := f.publishRelease(manifest, wasm)
	if ref.SHA256 != hex.EncodeToString(sum[:]) || int64(ref.Size) != size {
		t.Fatalf("release ref %+v does not match the module (%d bytes)", ref, size)
	}
	mkey, _ := objects.ModuleKey(ref.Name, ref.Version)
	rkey, _ := objects.ReleaseKey(ref.Name, ref.Version)

	proxy := testenv.StartProxy(t, f.s3.Endpoint())
	proxy.SetRate(4 << 20)
	cfg := f.agentConfig(device, "kitchen")
	cfg.S3.Endpoint = proxy.Addr()
	cfg.Policy.MaxModuleSize = modules.Size(16 << 20)
	a, _ := f.startAgentWatched(cfg)
	f.publishDesired(f.desiredDoc("kitchen", everyone(ref, "r1")))

	f.waitEvent(device, report.EventDownloading, "1.0.0")
	waitFor(t, 30*time.Second, func() bool { b, _ := proxy.BytesFor(mkey); return b >= size/2 },
		func() string { return fmt.Sprintf("half the module through the proxy; requests %v", proxy.Requests()) })
	// The server dies and the link with it: what the server had written into its socket
	// but the proxy not yet relayed is lost, so the agent has about half the module.
	f.s3.Kill()
	proxy.Cut()
	cutAt, _ := proxy.BytesFor(mkey)
	killedAt := time.Now()
	// While the server is down the agent keeps trying; nothing is activated.
	waitFor(t, 10*time.Second, func() bool { return proxy.Refused() > 0 },
		func() string { return fmt.Sprintf("a retry while the server is down; requests %v", proxy.Requests()) })
	f.s3.Start()
	restartedAt := time.Now()
	proxy.SetRate(0)

	f.waitEvent(device, report.EventActivated, "1.0.0")
	activatedAt := time.Now()
	s := f.waitStatus(device, func(s *report.Status) bool {
		m, ok := moduleStatus(s, "threshold-alert")
		return ok && m.State == report.StateActive && m.Version == "1.0.0"
	}, "threshold-alert 1.0.0 active")
	m, _ := moduleStatus(s, "threshold-alert")
	if m.SHA256 != ref.SHA256 {
		t.Fatalf("active sha256 %s, want %s", m.SHA256, ref.SHA256)
	}
	blob, err := a.store.Blob(ref.SHA256)
	if err != nil {
		t.Fatalf("stored module: %v", err)
	}
	if got := sha256.Sum256(blob); !bytes.Equal(got[:], sum[:]) {
		t.Fatalf("stored module hashes to %x, want %x", got, sum)
	}

	fetched, requests := proxy.BytesFor(mkey)
	relBytes, relRequests := proxy.BytesFor(rkey)
	var ranged []string
	for _, r := range proxy.Requests() {
		if strings.HasSuffix(r.Path, mkey) && r.Range != "" {
			ranged = append(ranged, r.Range)
		}
	}
	t.Logf("module %d bytes; cut after %d bytes (%.0f%%); %d module requests (ranges %v) brought %d bytes = %.4f × size; "+
		"release envelope: %d requests, %d bytes; server down %v; activated %v after the restart",
		size, cutAt, 100*float64(cutAt)/float64(size), requests, ranged, fetched, float64(fetched)/float64(size),
		relRequests, relBytes, restartedAt.Sub(killedAt).Round(time.Millisecond), activatedAt.Sub(restartedAt).Round(time.Millisecond))
	if len(ranged) == 0 {
		t.Errorf("no range request: the download was not resumed; requests %v", proxy.Requests())
	}
	if limit := size + size/10; fetched > limit {
		t.Errorf("fetched %d bytes for a %d-byte module, more than 1.1 × size (%d); requests %v", fetched, size, limit, proxy.Requests())
	}
}
