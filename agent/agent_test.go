package agent

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// alert is what threshold-alert publishes.
type alert struct {
	Device    string  `json:"device"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
}

// TestSignedReleaseRunsAndReports is scenario 1: a signed release in S3 and a signed desired
// state on MQTT; the agent downloads, verifies and activates it, handles sensor events,
// publishes the alerts, and its retained status shows the version.
func TestSignedReleaseRunsAndReports(t *testing.T) {
	f := newFleet(t)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	ref := f.publishRelease(manifest, wasm)
	f.publishDesired(f.desiredDoc("kitchen", everyone(ref, "r1")))
	cfg := f.agentConfig("pi-1", "kitchen")
	cfg.Metrics.Listen = freeAddr(t)
	f.startAgent(cfg)

	for _, kind := range []string{report.EventDownloading, report.EventVerified, report.EventActivated} {
		f.waitEvent("pi-1", kind, "1.0.0")
	}
	f.publishRaw("sensors/pi-1/temperature", []byte(`{"value": 21.0}`), false)
	f.publishRaw("sensors/pi-1/temperature", []byte(`{"value": 31.5}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages("alerts/pi-1/temperature")) > 0 },
		func() string { return "an alert" })
	var a alert
	if err := json.Unmarshal(f.messages("alerts/pi-1/temperature")[0], &a); err != nil || a.Value != 31.5 || a.Device != "pi-1" {
		t.Fatalf("alert %+v, %v", a, err)
	}
	s := f.waitStatus("pi-1", func(s *report.Status) bool {
		m, ok := moduleStatus(s, "threshold-alert")
		return ok && m.Invocations == 2
	}, "counting both events")
	m, _ := moduleStatus(s, "threshold-alert")
	if !s.Online || m.Version != "1.0.0" || m.State != report.StateActive || m.SHA256 != ref.SHA256 || m.Failures != 0 {
		t.Fatalf("status %+v, module %+v", s, m)
	}
	if s.Applied["group/kitchen"] != 1 || s.TrustVersion != 1 {
		t.Fatalf("status %+v does not record what it applied", s)
	}
	// The same counters on /metrics.
	resp, err := http.Get("http://" + cfg.Metrics.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`wasmfleet_module_invocations_total{module="threshold-alert",version="1.0.0"} 2`,
		"\nwasmfleet_mqtt_redelivered_total 0\n", "\ngo_goroutines "} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, body)
		}
	}
	// Memory: the process's resident set holds the Go runtime's mapped memory, which holds
	// the heap's objects.
	memory, err := readMetrics(cfg.Metrics.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if rss, mapped, heap := memory["process_resident_memory_bytes"], memory["go_memory_mapped_bytes"], memory["go_memory_heap_objects_bytes"]; heap < 1<<10 || mapped < heap || rss < 1<<20 {
		t.Errorf("memory metrics: resident %.0f, Go mapped %.0f, heap objects %.0f", rss, mapped, heap)
	}
	if len(f.messages("alerts/pi-1/temperature")) != 1 {
		t.Fatalf("alerts: %q (only the reading above the threshold should alert)", f.messages("alerts/pi-1/temperature"))
	}
}

// TestFailingReleaseRollsBack is scenario 2: an update to a release that traps on every
// event is rolled back within the health window, `rolled-back` is reported with the reason,
// and the previous version handles events again.
func TestFailingReleaseRollsBack(t *testing.T) {
	f := newFleet(t)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	good := f.publishRelease(manifest, wasm)
	bad := f.publishRelease(strings.Replace(manifest, "version: 1.0.0", "version: 1.1.0", 1), hostileWasm(t, "trap"))
	f.publishDesired(f.desiredDoc("kitchen", everyone(good, "r1")))
	f.startAgent(f.agentConfig("pi-2", "kitchen"))
	f.waitEvent("pi-2", report.EventActivated, "1.0.0")

	f.publishDesired(f.desiredDoc("kitchen", everyone(bad, "r2")))
	f.waitEvent("pi-2", report.EventActivated, "1.1.0")
	// Health window: 5 events, failure ratio 0.5. The third failure settles it.
	for range 3 {
		f.publishRaw("sensors/pi-2/temperature", []byte(`{"value": 35}`), false)
	}
	e := f.waitEvent("pi-2", report.EventRolledBack, "1.1.0")
	if e.ErrorKind != "trap" || !strings.Contains(e.Reason, "trap") || e.Rollout != "r2" {
		t.Fatalf("rolled-back event %+v does not give the reason", e)
	}
	s := f.waitStatus("pi-2", func(s *report.Status) bool {
		m, _ := moduleStatus(s, "threshold-alert")
		return m.State == report.StateRolledBack
	}, "rolled-back")
	m, _ := moduleStatus(s, "threshold-alert")
	if m.Version != "1.0.0" || !strings.Contains(m.Reason, "1.1.0") {
		t.Fatalf("module status %+v", m)
	}
	// The previous version runs again, and the bad one is not installed again while the
	// desired state still names it.
	f.publishRaw("sensors/pi-2/temperature", []byte(`{"value": 36}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages("alerts/pi-2/temperature")) > 0 },
		func() string { return "an alert from the rolled-back-to version" })
	activations := 0
	for _, e := range f.events("pi-2") {
		if e.Kind == report.EventActivated && e.Version == "1.1.0" {
			activations++
		}
	}
	if activations != 1 {
		t.Fatalf("1.1.0 activated %d times; after the rollback it must stay out: %+v", activations, f.events("pi-2"))
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
