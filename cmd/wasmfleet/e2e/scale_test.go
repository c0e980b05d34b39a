package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
)

var scaleDevices = flag.Int("scale", 0, "TestScale: how many agents (make bench-rollout runs 1000); 0: a small fleet, for CI")

// defaultScale is TestScale's fleet when -scale is not given: enough for four distinct
// waves, small enough for `make test`.
const defaultScale = 40

// TestScale is the scale test and the rollout benchmark (`make bench-rollout`, which sets
// -scale 1000): N real agents in this process, each with its own MQTT session, data
// directory, sandbox and S3 client, sharing only the servers; the controller is
// `wasmfleet serve` in its own process, so that its memory and CPU are its own.
//
//  1. Converge: threshold-alert 1.1.0 (a new module binary) over 1.0.0 in waves of 1, 10,
//     50 and 100% with no soak; every agent ends on 1.1.0, healthy. Measured: time to
//     converge, broker messages and S3 requests and bytes per device, the controller's
//     memory and CPU.
//  2. Abort: 1.2.0, which traps on every event, over 1.1.0 in waves of 5, 25, 50 and 100%;
//     a tenth of wave 1's devices get sensor readings (and so trap and roll back locally),
//     the others pass their window on 1.2.0. The controller aborts, wave 2 is never
//     published, and every device of the group, wave 1's included, is back on 1.1.0.
func TestScale(t *testing.T) {
	n := *scaleDevices
	if n <= 0 {
		n = defaultScale
	}
	timeout := 60*time.Second + time.Duration(n)*120*time.Millisecond
	// Mosquitto's own default persistence (a save every 30 minutes and on exit), not
	// testenv's save after every change, which is there for tests that kill the broker and
	// would make this one measure the broker's disk writes.
	w := newWorld(t, &worldOptions{NoObserver: true, MosquittoConfig: "autosave_on_changes false\nautosave_interval 1800\n"})
	ctx := context.Background()

	manifest, wasm := thresholdAlert(t, "1.0.0")
	v1 := w.publishRelease(manifest, wasm)
	manifest, _ = thresholdAlert(t, "1.1.0")
	v11 := w.publishRelease(manifest, withCustomSection(wasm, "wasmfleet-e2e", []byte("1.1.0")))
	manifest, _ = thresholdAlert(t, "1.2.0")
	bad := w.publishRelease(manifest, trapWasm(t))

	obs := newScaleObserver(t, w)
	agentsS3 := testenv.StartProxy(t, w.s3.Endpoint())
	ctlS3 := testenv.StartProxy(t, w.s3.Endpoint())

	// The fleet.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	devices := make([]string, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				cfg := w.agentConfig(devices[i], &agentOptions{StatusInterval: 10 * time.Minute}, group)
				cfg.S3.Endpoint = agentsS3.Addr()
				w.startAgent(cfg)
			}
		})
	}
	for i := range n {
		devices[i] = fmt.Sprintf("dev-%05d", i)
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	waitFor(t, timeout, func() bool { return obs.online() == n }, func() string { return fmt.Sprintf("%d of %d agents online", obs.online(), n) })
	startup := time.Since(start)
	t.Logf("%d agents started and online in %v", n, startup.Round(time.Millisecond))

	ctl := w.startServeProcess(t, ctlS3.Addr())
	t.Logf("BENCH controller after reading %d statuses: rss %s (anonymous %s)",
		n, humanKiB(rssKiB(t, ctl.pid())), humanKiB(procStatus(t, ctl.pid(), "RssAnon")))
	operator, err := rollout.New(rollout.Options{Store: w.store, ID: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	// Seed: 1.0.0, new to the group, to everybody at once.
	start = time.Now()
	if _, err := operator.Start(ctx, rollout.Spec{ID: "seed", Release: v1, Group: group, Waves: []float64{100},
		MinDevices: 1, Timeout: timeout, Actor: "bench"}); err != nil {
		t.Fatal(err)
	}
	obs.waitAll(t, timeout, "threshold-alert", "1.0.0", report.StateActive)
	w.waitState("seed", rollout.Completed, timeout)
	t.Logf("seed: %d agents installed 1.0.0 in %v", n, time.Since(start).Round(time.Millisecond))

	t.Run("Converge", func(t *testing.T) {
		cur, _, err := controller.LatestDesired(ctx, w.store, group, &signing.Verifier{Trust: w.trust})
		if err != nil {
			t.Fatal(err)
		}
		id := "scale-converge"
		s0 := snapshotAll(t, obs, agentsS3, ctlS3, ctl)
		start := time.Now()
		if _, err := operator.Start(ctx, rollout.Spec{ID: id, Release: v11, Group: group, Current: cur, Waves: []float64{1, 10, 50, 100},
			MaxFailure: 0.05, MinDevices: 3, Timeout: timeout, Actor: "bench"}); err != nil {
			t.Fatal(err)
		}
		r := w.waitState(id, rollout.Completed, timeout)
		completed := time.Since(start)
		obs.waitAll(t, timeout, "threshold-alert", "1.1.0", report.StateActive)
		converged := time.Since(start)
		s1 := snapshotAll(t, obs, agentsS3, ctlS3, ctl)
		if r.Previous == nil || *r.Previous != v1 {
			t.Fatalf("previous release %+v", r.Previous)
		}
		if got := obs.percents(id); fmt.Sprint(got) != "[1 10 50 100]" {
			t.Fatalf("desired states of the rollout: %v", got)
		}
		d := s1.sub(s0)
		d.ctlLiveMB, _ = ctl.liveHeap(s0.ctlGCs)
		waves := waveTimes(t, w, id)
		_, at := obs.published(id)
		var opened []string
		for i, a := range at {
			opened = append(opened, fmt.Sprintf("w%d:+%v", i+1, a.Sub(start).Round(10*time.Millisecond)))
		}
		t.Logf("BENCH converge n=%d completed=%v all-reporting=%v opened=%s passed=%s", n, completed.Round(time.Millisecond),
			converged.Round(time.Millisecond), strings.Join(opened, " "), waves)
		d.log(t, "converge", n)
	})

	t.Run("Abort", func(t *testing.T) {
		id := "scale-abort"
		waves := []float64{5, 25, 50, 100}
		var wave1, failing []string
		for _, dev := range devices {
			if wave.InWave(dev, id, waves[0]) {
				wave1 = append(wave1, dev)
			}
		}
		for i := 0; i < len(wave1); i += 10 {
			failing = append(failing, wave1[i]) // a tenth of wave 1, at least one
		}
		stopSensors := obs.sensors(failing)
		defer stopSensors()
		cur, _, err := controller.LatestDesired(ctx, w.store, group, &signing.Verifier{Trust: w.trust})
		if err != nil {
			t.Fatal(err)
		}
		s0 := snapshotAll(t, obs, agentsS3, ctlS3, ctl)
		start := time.Now()
		if _, err := operator.Start(ctx, rollout.Spec{ID: id, Release: bad, Group: group, Current: cur, Waves: waves,
			MaxFailure: 0.05, MinDevices: 3, Timeout: timeout, Actor: "bench"}); err != nil {
			t.Fatal(err)
		}
		r := w.waitState(id, rollout.Aborted, timeout)
		aborted := time.Since(start)
		obs.waitAll(t, timeout, "threshold-alert", "1.1.0", report.StateActive, report.StateRolledBack)
		back := time.Since(start)
		stopSensors()
		s1 := snapshotAll(t, obs, agentsS3, ctlS3, ctl)
		if r.Wave != 0 || !strings.HasPrefix(r.AbortReason, "wave 1 (5%)") {
			t.Fatalf("aborted in wave %d: %s", r.Wave+1, r.AbortReason)
		}
		if got := obs.percents(id); fmt.Sprint(got) != "[5 100]" {
			t.Fatalf("desired states of the rollout: %v (wave 1, then the revert; never wave 2)", got)
		}
		updated := obs.activated(id, "1.2.0")
		t.Logf("BENCH abort n=%d wave1=%d failing=%d updated-to-1.2.0=%d aborted-after=%v all-back-after=%v reason=%q",
			n, len(wave1), len(failing), updated, aborted.Round(time.Millisecond), back.Round(time.Millisecond), truncate(r.AbortReason, 200))
		d := s1.sub(s0)
		d.ctlLiveMB, _ = ctl.liveHeap(s0.ctlGCs)
		d.log(t, "abort", n)
	})

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("BENCH agents-process n=%d rss=%s heap-inuse=%s goroutines=%d", n, humanKiB(rssKiB(t, os.Getpid())),
		humanKiB(int64(after.HeapInuse/1024)), runtime.NumGoroutine())
}

// withCustomSection appends a custom section to a module: another binary, the same code.
func withCustomSection(wasm []byte, name string, payload []byte) []byte {
	var body []byte
	body = appendULEB(body, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := append(bytes.Clone(wasm), 0)
	out = appendULEB(out, uint64(len(body)))
	return append(out, body...)
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// waveTimes says when each wave opened and passed, from the audit records.
func waveTimes(t *testing.T, w *world, id string) string {
	t.Helper()
	var b strings.Builder
	var first time.Time
	for _, step := range w.auditSteps(id) {
		rec := w.auditRecord(id, step)
		if first.IsZero() {
			first = rec.Time
		}
		if rec.To == rollout.Soaking {
			fmt.Fprintf(&b, "w%d:+%v ", rec.Wave+1, rec.Time.Sub(first).Round(10*time.Millisecond))
		}
	}
	return strings.TrimSpace(b.String())
}

// snapshot is every counter at one moment.
type snapshot struct {
	obs                obsCounts
	agentsS3, ctlS3    testenv.ProxyTotals
	ctlCPU             time.Duration
	ctlRSS, ctlPeakRSS int64
	ctlAnon            int64 // heap and stacks; the rest of the RSS is the mapped binary
	ctlGCs             int   // collections so far
	ctlLiveMB          int   // the largest live heap after a collection since the earlier snapshot
}

func snapshotAll(t *testing.T, o *scaleObserver, a, c *testenv.Proxy, ctl *serveProcess) snapshot {
	t.Helper()
	return snapshot{obs: o.counts(), agentsS3: a.Totals(), ctlS3: c.Totals(),
		ctlCPU: cpuTime(t, ctl.pid()), ctlRSS: rssKiB(t, ctl.pid()), ctlPeakRSS: peakRSSKiB(t, ctl.pid()),
		ctlAnon: procStatus(t, ctl.pid(), "RssAnon"), ctlGCs: gcCount(ctl)}
}

func (s snapshot) sub(o snapshot) snapshot {
	return snapshot{obs: s.obs.sub(o.obs), agentsS3: subTotals(s.agentsS3, o.agentsS3), ctlS3: subTotals(s.ctlS3, o.ctlS3),
		ctlCPU: s.ctlCPU - o.ctlCPU,
		ctlRSS: s.ctlRSS, ctlPeakRSS: s.ctlPeakRSS, ctlAnon: s.ctlAnon, ctlGCs: s.ctlGCs - o.ctlGCs}
}

// subTotals is what crossed a proxy between two readings of its totals.
func subTotals(a, b testenv.ProxyTotals) testenv.ProxyTotals {
	return testenv.ProxyTotals{Requests: a.Requests - b.Requests, Gets: a.Gets - b.Gets, BytesUp: a.BytesUp - b.BytesUp,
		BytesDown: a.BytesDown - b.BytesDown, RefusedConnects: a.RefusedConnects - b.RefusedConnects}
}

func gcCount(p *serveProcess) int { _, n := p.liveHeap(0); return n }

func (s snapshot) log(t *testing.T, what string, n int) {
	t.Helper()
	per := func(v int64) string { return strconv.FormatFloat(float64(v)/float64(n), 'f', 2, 64) }
	up := s.obs.statuses + s.obs.events
	t.Logf("BENCH %s mqtt: devices published %d (per device %s: %s statuses, %s events; and %s application messages), "+
		"the controller published %d desired states (each delivered to every device of the group)",
		what, up, per(up), per(s.obs.statuses), per(s.obs.events), per(s.obs.app), s.obs.desired)
	t.Logf("BENCH %s s3 agents: %d requests (%d GET), %s down, %s up; per device %s requests, %s down",
		what, s.agentsS3.Requests, s.agentsS3.Gets, humanKiB(s.agentsS3.BytesDown/1024), humanKiB(s.agentsS3.BytesUp/1024),
		per(s.agentsS3.Requests), humanBytes(s.agentsS3.BytesDown/int64(n)))
	t.Logf("BENCH %s s3 controller: %d requests, %s down, %s up", what, s.ctlS3.Requests, humanKiB(s.ctlS3.BytesDown/1024), humanKiB(s.ctlS3.BytesUp/1024))
	t.Logf("BENCH %s controller: cpu %v, rss %s (anonymous %s, the rest the mapped binary), peak rss %s, largest live heap after a GC %d MB (%d GCs)",
		what, s.ctlCPU.Round(time.Millisecond), humanKiB(s.ctlRSS), humanKiB(s.ctlAnon), humanKiB(s.ctlPeakRSS), s.ctlLiveMB, s.ctlGCs)
}

func humanKiB(k int64) string {
	switch {
	case k >= 10*1024*1024:
		return fmt.Sprintf("%.1f GiB", float64(k)/1024/1024)
	case k >= 10*1024:
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}

func humanBytes(b int64) string {
	if b >= 10*1024 {
		return humanKiB(b / 1024)
	}
	return fmt.Sprintf("%d B", b)
}

// /proc readers (Linux).

func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	return 0
}

func rssKiB(t *testing.T, pid int) int64     { return procStatus(t, pid, "VmRSS") }
func peakRSSKiB(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmHWM") }

// cpuTime is a process's user and system time (/proc/PID/stat fields 14 and 15, in clock
// ticks of 1/100 s on Linux).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

// serveProcess is `wasmfleet serve` running as its own process.
type serveProcess struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

func (p *serveProcess) pid() int { return p.cmd.Process.Pid }

var gcLine = regexp.MustCompile(`(?m)^gc \d+ @.* (\d+)->(\d+)->(\d+) MB`)

// liveHeap is the largest live heap after a collection (gctrace), in MB, over the
// collections since the first skip ones, and how many there were.
func (p *serveProcess) liveHeap(skip int) (maxMB, gcs int) {
	for i, m := range gcLine.FindAllStringSubmatch(p.out.String(), -1) {
		gcs++
		if i < skip {
			continue
		}
		v, _ := strconv.Atoi(m[3])
		maxMB = max(maxMB, v)
	}
	return maxMB, gcs
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServeProcess builds cmd/wasmfleet and runs `wasmfleet serve` with the world's rollout
// key, reaching S3 at s3Addr, until the test ends (SIGTERM; it must exit 0).
func (w *world) startServeProcess(t *testing.T, s3Addr string) *serveProcess {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "wasmfleet")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/wasmfleet/wasmfleet/cmd/wasmfleet").CombinedOutput(); err != nil {
		t.Fatalf("go build wasmfleet: %v\n%s", err, out)
	}
	p := &serveProcess{out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--rollout-key", filepath.Join(w.dir, "rollout.key"), "--trust", filepath.Join(w.dir, "root.json"),
		"--broker", w.mq.URL(), "--id", "bench", "--sync-idle", "500ms", "--http", "",
		"--s3-endpoint", s3Addr, "--bucket", w.bucket, "--s3-insecure", "--s3-access-key", w.s3.AccessKey, "--region", w.s3.Region)
	// gctrace: the live heap after each collection, which says what the controller keeps
	// (its RSS also holds garbage not yet returned, and the KMS SDKs the CLI links).
	p.cmd.Env = append(os.Environ(), "WASMFLEET_S3_SECRET_KEY="+w.s3.SecretKey, "WASMFLEET_KEY_PASSWORD="+keyPassword, "GODEBUG=gctrace=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var werr error
	go func() { werr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if f := os.Getenv("WASMFLEET_BENCH_SERVE_LOG"); f != "" {
			os.WriteFile(f, []byte(p.out.String()), 0o644)
		}
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
			if werr != nil {
				t.Errorf("wasmfleet serve: %v\n%s", werr, p.out.String())
			}
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("wasmfleet serve did not stop within 20s of SIGINT\n%s", p.out.String())
		}
	})
	waitFor(t, 2*time.Minute, func() bool { return strings.Contains(p.out.String(), "driving rollouts") },
		func() string { return "wasmfleet serve to read the statuses:\n" + p.out.String() })
	return p
}

// scaleObserver follows the fleet without keeping every message: the latest module state
// of each device, counters by kind of message and the desired states of the group. Its
// client also plays the sensors.
type scaleObserver struct {
	w *world
	c mqtt.Client

	statuses, events, app, desiredN atomic.Int64

	mu          sync.Mutex
	isOnline    map[string]bool
	modules     map[string]report.ModuleStatus // threshold-alert, by device
	desired     [][]byte
	desiredAt   []time.Time
	activations map[string]int // "rollout version" → activations
	sysSent     int64
	sysRecv     int64
	sysAt       time.Time
}

type obsCounts struct{ statuses, events, app, desired int64 }

func (c obsCounts) sub(o obsCounts) obsCounts {
	return obsCounts{c.statuses - o.statuses, c.events - o.events, c.app - o.app, c.desired - o.desired}
}

func newScaleObserver(t *testing.T, w *world) *scaleObserver {
	t.Helper()
	o := &scaleObserver{w: w, isOnline: map[string]bool{}, modules: map[string]report.ModuleStatus{}, activations: map[string]int{}}
	opts := mqtt.NewClientOptions().AddBroker(w.mq.URL()).SetClientID("e2e-scale-observer").SetCleanSession(true).
		SetOrderMatters(true).SetDefaultPublishHandler(o.handle).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.SubscribeMultiple(map[string]byte{"wasmfleet/#": 1, "sensors/#": 0, "alerts/#": 0}, nil)
		})
	o.c = mqtt.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	return o
}

func (o *scaleObserver) handle(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	switch {
	case m.Retained():
		return // a replay at subscription, not traffic
	case strings.HasSuffix(topic, "/desired"):
		o.desiredN.Add(1)
		o.mu.Lock()
		o.desired = append(o.desired, m.Payload())
		o.desiredAt = append(o.desiredAt, time.Now())
		o.mu.Unlock()
	case strings.HasSuffix(topic, "/status"):
		o.statuses.Add(1)
		s, err := report.ParseStatus(m.Payload())
		if err != nil {
			return
		}
		o.mu.Lock()
		o.isOnline[s.Device] = s.Online
		if ms, ok := moduleOf(s, "threshold-alert"); ok {
			o.modules[s.Device] = ms
		}
		o.mu.Unlock()
	case strings.HasSuffix(topic, "/events"):
		o.events.Add(1)
		e, err := report.ParseEvent(m.Payload())
		if err == nil && e.Kind == report.EventActivated {
			o.mu.Lock()
			o.activations[e.Rollout+" "+e.Version]++
			o.mu.Unlock()
		}
	default:
		o.app.Add(1)
	}
}

func (o *scaleObserver) counts() obsCounts {
	return obsCounts{o.statuses.Load(), o.events.Load(), o.app.Load(), o.desiredN.Load()}
}

func (o *scaleObserver) online() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, on := range o.isOnline {
		if on {
			n++
		}
	}
	return n
}

// waitAll waits until every device reports module at version in one of states.
func (o *scaleObserver) waitAll(t *testing.T, timeout time.Duration, module, version string, states ...string) {
	t.Helper()
	count := func() (int, string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		n, other := 0, ""
		for dev, m := range o.modules {
			if m.Version == version && (len(states) == 0 || contains(states, m.State)) {
				n++
			} else if other == "" {
				other = fmt.Sprintf("%s: %s %s %s", dev, m.Version, m.State, m.Reason)
			}
		}
		return n, other
	}
	waitFor(t, timeout, func() bool { n, _ := count(); return n == o.onlineOrAll() }, func() string {
		n, other := count()
		return fmt.Sprintf("%d of %d devices on %s %s %v (for instance %s)", n, o.onlineOrAll(), module, version, states, other)
	})
}

// onlineOrAll is the number of devices the observer knows.
func (o *scaleObserver) onlineOrAll() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.isOnline)
}

// percents lists the wave percentages of rollout id in the desired states seen, each new
// sequence once.
func (o *scaleObserver) percents(id string) []float64 {
	p, _ := o.published(id)
	return p
}

// published lists the wave percentages of rollout id in the desired states seen, each new
// sequence once, and when each arrived.
func (o *scaleObserver) published(id string) ([]float64, []time.Time) {
	o.mu.Lock()
	msgs := append([][]byte(nil), o.desired...)
	at := append([]time.Time(nil), o.desiredAt...)
	o.mu.Unlock()
	var out []float64
	var when []time.Time
	var last uint64
	for i, b := range msgs {
		d, err := (&signing.Verifier{Trust: o.w.trust}).VerifyDesired(b, signing.Target{Group: group}, 0)
		if err != nil {
			continue
		}
		m, ok := target(d, "threshold-alert")
		if !ok || m.Rollout != id || d.Sequence == last {
			continue
		}
		last = d.Sequence
		out, when = append(out, m.WavePercent), append(when, at[i])
	}
	return out, when
}

// activated counts the activations of version under rollout id.
func (o *scaleObserver) activated(id, version string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.activations[id+" "+version]
}

// sensors publishes a reading for each device every 100ms until stop (QoS 0: at this scale
// the observer's own acknowledgements would be most of its traffic).
func (o *scaleObserver) sensors(devices []string) (stop func()) {
	return publishReadings(o.c, 0, devices)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
