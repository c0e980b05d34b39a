package agent

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

var (
	steadyFor  = flag.Duration("steady", 15*time.Second, "how long TestSteadyRate runs (make soak: 10m)")
	steadyRate = flag.Int("steady-rate", 1000, "events a second in TestSteadyRate")
)

// TestSteadyRate runs a wasmfleet-agent process at a steady -steady-rate QoS 1 events a
// second (1,000) for -steady (make test: 15 s; make soak: 10 minutes), each handled by the
// echo example and published back. Every event's output must arrive, and after a warm-up
// (a fifth of the run, at least 5 s) the mean resident memory of the last quarter of the
// samples must be within 5% of the first quarter's (issue 8: RSS flat, ±5%).
func TestSteadyRate(t *testing.T) {
	const device, group = "pi-steady", "steady"
	duration, rate := *steadyFor, *steadyRate
	bin := buildAgent(t)
	// The publisher waits for the broker's acknowledgements of each batch of 10: with
	// Nagle's algorithm on the broker's side (Mosquitto's default) and delayed ACKs on this
	// side, a batch's last acknowledgements wait some 40 ms, which caps it near 230 a second.
	f := newFleetFull(t, nil, &testenv.MosquittoOptions{Config: fastBroker.Config + "set_tcp_nodelay true\n"})
	manifest, wasm := example(t, "echo", "echo.wasm")
	f.publishDesired(f.desiredDoc(group, everyone(f.publishRelease(manifest, wasm), "r1")))
	cfg := f.agentConfig(device, group)
	cfg.Metrics.Listen = freeAddr(t)
	proc := f.startAgentProcess(bin, writeAgentYAML(t, cfg), "agent")
	f.waitEvent(device, report.EventActivated, "1.0.0")

	smp := startSampler(proc, cfg.Metrics.Listen, max(duration/200, 250*time.Millisecond))
	pub := startLoadPublisher(t, f.mq.URL(), "echo-in/"+device, rate)
	start := time.Now()
	select {
	case <-proc.Done():
		t.Fatalf("the agent exited: %v", proc.Err())
	case <-time.After(duration):
	}
	pub.halt()
	elapsed := time.Since(start)
	samples := smp.halt(t)
	sent := pub.sent()
	out := "echo/" + device
	waitFor(t, 30*time.Second, func() bool { return len(f.messages(out)) >= len(sent) },
		func() string {
			return fmt.Sprintf("an output for each of the %d events; %d arrived", len(sent), len(f.messages(out)))
		})
	seen := map[string]bool{}
	for _, p := range f.messages(out) {
		seen[string(p)] = true
	}
	for _, ev := range sent {
		if !seen[ev] {
			t.Fatalf("no output for %s", ev)
		}
	}

	warm := start.Add(max(duration/5, 5*time.Second))
	steady := between(samples, warm, start.Add(duration))
	if len(steady) < 8 {
		t.Fatalf("%d samples after the warm-up: too few to judge", len(steady))
	}
	q := len(steady) / 4
	r1, r2 := mean(steady[:q], rssOf), mean(steady[len(steady)-q:], rssOf)
	var b strings.Builder
	for i := range 10 {
		w := between(samples, start.Add(duration*time.Duration(i)/10), start.Add(duration*time.Duration(i+1)/10))
		if len(w) > 0 {
			fmt.Fprintf(&b, "\n\t%3d%%–%3d%%: RSS mean %.1f MiB (max %.1f), goroutines max %d",
				i*10, i*10+10, mean(w, rssOf)/(1<<20), float64(peak(w, rssOf).rss)/(1<<20), peak(w, goroutinesOf).goroutines)
		}
	}
	t.Logf("BENCH steady %v at %d events/s asked, %.0f/s sent: %d events, each handled; RSS mean %.2f MiB in the first quarter after the warm-up, %.2f MiB in the last (%+.1f%%); %d samples:%s",
		duration, rate, float64(len(sent))/elapsed.Seconds(), len(sent), r1/(1<<20), r2/(1<<20), 100*(r2/r1-1), len(samples), b.String())
	if r2 > r1*1.05 || r2 < r1*0.95 {
		t.Errorf("RSS not flat: mean %.2f MiB in the first quarter after the warm-up, %.2f MiB in the last", r1/(1<<20), r2/(1<<20))
	}
	if got := float64(len(sent)) / elapsed.Seconds(); got < 0.9*float64(rate) {
		t.Errorf("sent %.0f events a second, asked for %d: the publisher could not keep up", got, rate)
	}
}
