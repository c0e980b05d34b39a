package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/internal/residency"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// kindOf names the class of an error for reports: a signing refusal kind, a sandbox error
// kind, or "error".
func kindOf(err error) string {
	if k := signing.KindOf(err); k != nil {
		return k.Error()
	}
	if k := sandbox.Kind(err); k != "error" {
		return k
	}
	return "error"
}

// onConnect runs after every (re)connection: the retained status says online again.
func (a *Agent) onConnect() { a.statusChanged() }

// statusChanged asks the reporter to publish the status soon.
func (a *Agent) statusChanged() {
	select {
	case a.statusDue <- struct{}{}:
	default:
	}
}

// reporter publishes the retained status on change (at most every 200 ms) and periodically.
func (a *Agent) reporter(ctx context.Context) {
	tick := time.NewTicker(time.Duration(a.cfg.StatusInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.statusDue:
			// Coalesce a burst of changes.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		b, err := json.Marshal(a.Status())
		if err != nil {
			a.log.Error().Err(err).Msg("encode status")
			continue
		}
		if !a.sess.publishNow(ctx, a.topics.Status(a.cfg.DeviceID), b, true) {
			a.log.Debug().Msg("status not published: broker unreachable; it is sent again on connect")
		}
	}
}

// Status is the device's report as it would be published now.
func (a *Agent) Status() report.Status {
	st := a.store.State()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := report.Status{
		Device: a.cfg.DeviceID, Online: true, Time: time.Now().UTC(), AgentVersion: Version, Arch: Arch(),
		Engine: engine(), Groups: a.cfg.Groups, Applied: st.Applied, TrustVersion: a.trust.Version(),
		Outbox: a.sess.queued(), OutboxDropped: a.sess.dropped.Load(), LastError: a.lastError,
	}
	names := make([]string, 0, len(st.Modules))
	for n := range st.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ms := st.Modules[name]
		m := report.ModuleStatus{Name: name, Version: ms.Active.Version, SHA256: ms.Active.SHA256, State: ms.Status,
			Reason: ms.Reason, Rollout: ms.Rollout}
		if m.State == "" {
			m.State = report.StateActive
		}
		if ms.Previous != nil {
			m.Previous = ms.Previous.Version
		}
		if a.installing[name] {
			m.State = report.StateDownloading
		}
		if ms.Failed != nil {
			m.Target = ms.Failed.Version
			if ms.Active.Name == "" {
				m.State = report.StateFailed
				m.Version = ms.Failed.Version
			}
		}
		if r := a.active[name]; r != nil {
			stats := r.mod.Stats()
			m.Invocations, m.Failures, m.Dropped = r.invocations.Load(), r.failures.Load(), r.dropped.Load()
			if len(stats.ByKind) > 0 {
				m.FailuresBy = stats.ByKind
			}
			p50, p99 := r.lat.percentiles()
			m.P50Micros, m.P99Micros = uint64(p50.Microseconds()), uint64(p99.Microseconds())
		}
		s.Modules = append(s.Modules, m)
	}
	return s
}

// event publishes a lifecycle event (through the outbox, so it survives a broker outage).
func (a *Agent) event(e report.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.eventLocked(e)
}

func (a *Agent) eventLocked(e report.Event) {
	e.Device, e.Time = a.cfg.DeviceID, time.Now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	a.sess.publish(a.topics.Events(a.cfg.DeviceID), b, false)
}

// serveMetrics writes the Prometheus text exposition of the agent's counters.
func (a *Agent) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	s := a.Status()
	var b strings.Builder
	gauge := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	gauge("wasmfleet_mqtt_connected", "1 while the MQTT session is up.", "gauge")
	fmt.Fprintf(&b, "wasmfleet_mqtt_connected %d\n", btoi(a.sess.isConnected()))
	gauge("wasmfleet_mqtt_redelivered_total", "Messages the broker sent again after a reconnection that were not handled twice.", "counter")
	fmt.Fprintf(&b, "wasmfleet_mqtt_redelivered_total %d\n", a.redelivered.skipped.Load())
	gauge("go_goroutines", "Goroutines of the agent.", "gauge")
	fmt.Fprintf(&b, "go_goroutines %d\n", runtime.NumGoroutine())
	mem := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(mem)
	gauge("go_memory_heap_objects_bytes", "Go heap memory held by objects, live or not yet swept.", "gauge")
	fmt.Fprintf(&b, "go_memory_heap_objects_bytes %d\n", mem[0].Value.Uint64())
	gauge("go_memory_mapped_bytes", "Memory the Go runtime has mapped, minus what it returned to the OS (wazero's compiled code is not in it).", "gauge")
	fmt.Fprintf(&b, "go_memory_mapped_bytes %d\n", mem[1].Value.Uint64()-mem[2].Value.Uint64())
	if rss, ok := residency.Resident(); ok {
		gauge("process_resident_memory_bytes", "Resident memory of the agent process.", "gauge")
		fmt.Fprintf(&b, "process_resident_memory_bytes %d\n", rss)
	}
	gauge("wasmfleet_outbox_messages", "Publishes waiting for the broker.", "gauge")
	fmt.Fprintf(&b, "wasmfleet_outbox_messages %d\n", s.Outbox)
	gauge("wasmfleet_outbox_dropped_total", "Publishes dropped because the outbox was full.", "counter")
	fmt.Fprintf(&b, "wasmfleet_outbox_dropped_total %d\n", s.OutboxDropped)
	gauge("wasmfleet_module_invocations_total", "Events handled, by module.", "counter")
	for _, m := range s.Modules {
		fmt.Fprintf(&b, "wasmfleet_module_invocations_total{module=%q,version=%q} %d\n", m.Name, m.Version, m.Invocations)
	}
	gauge("wasmfleet_module_failures_total", "Events that failed, by module.", "counter")
	for _, m := range s.Modules {
		fmt.Fprintf(&b, "wasmfleet_module_failures_total{module=%q,version=%q} %d\n", m.Name, m.Version, m.Failures)
	}
	gauge("wasmfleet_module_dropped_total", "Events dropped because the module's queue was full.", "counter")
	for _, m := range s.Modules {
		fmt.Fprintf(&b, "wasmfleet_module_dropped_total{module=%q,version=%q} %d\n", m.Name, m.Version, m.Dropped)
	}
	gauge("wasmfleet_module_latency_seconds", "Event latency percentiles over the last events, by module.", "gauge")
	for _, m := range s.Modules {
		fmt.Fprintf(&b, "wasmfleet_module_latency_seconds{module=%q,quantile=\"0.5\"} %g\n", m.Name, float64(m.P50Micros)/1e6)
		fmt.Fprintf(&b, "wasmfleet_module_latency_seconds{module=%q,quantile=\"0.99\"} %g\n", m.Name, float64(m.P99Micros)/1e6)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write([]byte(b.String()))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// goarm returns the GOARM the binary was built with ("6", "7"), from its build info.
func goarm() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				return strings.TrimSuffix(strings.TrimSuffix(s.Value, ",softfloat"), ",hardfloat")
			}
		}
	}
	return "7"
}

// engine names the wazero engine this platform uses.
func engine() string {
	if Arch() == "amd64" || Arch() == "arm64" {
		return "compiler"
	}
	return "interpreter"
}

func pluralEvents(n, total int) string { return fmt.Sprintf("%d of %d events", n, total) }

func percent(r float64) string { return fmt.Sprintf("%g%%", r*100) }

var _ = errors.New
