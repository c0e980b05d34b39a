package agent

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// TestSoak runs a wasmfleet-agent process under a steady load of QoS 1 events (20 a second,
// each published back by a 1 ms handler) while a new release is rolled out every
// -soak-update (make test: 5 s; make soak: 1 minute) for -soak (20 s; make soak: 30
// minutes). Its resident memory, goroutines and open descriptors are sampled throughout
// from /proc and its /metrics; after a warm-up (a fifth of the run, at least 10 s), the
// last quarter of the samples may not be above the first quarter's (means: RSS by more
// than 10% + 2 MiB; peaks: goroutines by more than 5, descriptors by more than 2). Every update must be
// activated, and every event handled: its output arrives.
func TestSoak(t *testing.T) {
	const device, group, module = "pi-soak", "soak", "slow-echo"
	const rate = 20
	duration, every := *soakFor, *soakEvery
	bin := buildAgent(t)
	f := newFleet(t)
	wasm := watModule(t, strings.Replace(slowEchoWAT, "SPIN", strconv.Itoa(1_000_000), 1))
	manifestAt := func(v string) string { return strings.Replace(slowEchoManifest, "version: 1.0.0", "version: "+v, 1) }
	ref := f.publishRelease(slowEchoManifest, wasm)
	f.publishDesired(f.desiredDoc(group, everyone(ref, "r0")))
	cfg := f.agentConfig(device, group)
	cfg.Metrics.Listen = freeAddr(t)
	proc := f.startAgentProcess(bin, writeAgentYAML(t, cfg), "agent")
	f.waitEvent(device, report.EventActivated, "1.0.0")

	smp := startSampler(proc, cfg.Metrics.Listen, max(duration/200, 250*time.Millisecond))
	pub := startLoadPublisher(t, f.mq.URL(), "in/"+device, rate)
	start := time.Now()
	updates := 0
	var activation durations
	for time.Since(start)+every <= duration {
		// The steady part: wait out the interval, failing fast if the agent dies.
		select {
		case <-proc.Done():
			t.Fatalf("the agent exited: %v", proc.Err())
		case <-time.After(time.Until(start.Add(time.Duration(updates+1) * every))):
		}
		updates++
		v := fmt.Sprintf("1.0.%d", updates)
		next := f.publishRelease(manifestAt(v), padTo(t, wasm, len(wasm)+64+updates))
		published := time.Now()
		f.publishDesired(f.desiredDoc(group, everyone(next, "r"+strconv.Itoa(updates))))
		f.waitStatus(device, soakRuns(module, next), v+" active")
		activation = append(activation, time.Since(published))
	}
	select {
	case <-proc.Done():
		t.Fatalf("the agent exited: %v", proc.Err())
	case <-time.After(time.Until(start.Add(duration))):
	}
	pub.halt()
	samples := smp.halt(t)
	sent := pub.sent()
	// Every event's output arrives (through the versions it was handled by).
	out := "out/" + device
	missing := func() (n int) {
		seen := map[string]bool{}
		for _, p := range f.messages(out) {
			seen[string(p)] = true
		}
		for _, ev := range sent {
			if !seen[ev] {
				n++
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, func() bool { return missing() == 0 },
		func() string {
			return fmt.Sprintf("an output for each of the %d events; %d missing", len(sent), missing())
		})
	dups := len(f.messages(out)) - len(sent)

	// The first seconds are the Go heap growing to its working size, not a leak.
	warm := start.Add(max(duration/5, 10*time.Second))
	steady := between(samples, warm, start.Add(duration+time.Second))
	if len(steady) < 8 {
		t.Fatalf("%d samples after the warm-up: too few to judge", len(steady))
	}
	q := len(steady) / 4
	first, last := steady[:q], steady[len(steady)-q:]
	var b strings.Builder
	for i := range 10 {
		w := between(samples, start.Add(duration*time.Duration(i)/10), start.Add(duration*time.Duration(i+1)/10))
		if len(w) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n\t%3d%%–%3d%%: RSS mean %.1f MiB (max %.1f), goroutines max %d, fds max %d",
			i*10, i*10+10, mean(w, rssOf)/(1<<20), float64(peak(w, rssOf).rss)/(1<<20), peak(w, goroutinesOf).goroutines, peak(w, fdsOf).fds)
	}
	t.Logf("soak of %v at %d events/s: %d events, each handled (%d outputs more than events), %d updates, each active %v after its desired state; %d samples:%s",
		duration, rate, len(sent), dups, updates, activation, len(samples), b.String())

	if r1, r2 := mean(first, rssOf), mean(last, rssOf); r2 > r1*1.10+2<<20 {
		t.Errorf("RSS grew: mean %.1f MiB in the first quarter after the warm-up, %.1f MiB in the last", r1/(1<<20), r2/(1<<20))
	}
	if g1, g2 := peak(first, goroutinesOf).goroutines, peak(last, goroutinesOf).goroutines; g2 > g1+5 {
		t.Errorf("goroutines grew: at most %d in the first quarter after the warm-up, %d in the last", g1, g2)
	}
	if d1, d2 := peak(first, fdsOf).fds, peak(last, fdsOf).fds; d2 > d1+2 {
		t.Errorf("open descriptors grew: at most %d in the first quarter after the warm-up, %d in the last", d1, d2)
	}
	// The store keeps the active release and at most the one before, and so does the compile
	// cache (and its index).
	blobs, _, _ := diskUsage(t, filepath.Join(cfg.DataDir, "store", "blobs"))
	cacheFiles, cacheBytes, _ := diskUsage(t, filepath.Join(cfg.DataDir, "cache"))
	t.Logf("after %d updates: %d blobs in the store; compile cache %d files, %.1f MiB", updates, blobs, cacheFiles, float64(cacheBytes)/(1<<20))
	if blobs > 2 {
		t.Errorf("the store holds %d blobs after %d updates: old releases are not collected", blobs, updates)
	}
	if cacheFiles > 3 {
		t.Errorf("the compile cache holds %d files after %d updates: old versions' code is not collected", cacheFiles, updates)
	}
	if updates < int(duration/every)-1 {
		t.Errorf("%d updates in %v, want one every %v", updates, duration, every)
	}
}

// soakRuns is a status check: module runs ref.
func soakRuns(module string, ref signing.ReleaseRef) func(*report.Status) bool {
	return func(s *report.Status) bool {
		m, ok := moduleStatus(s, module)
		return ok && s.Online && m.Version == ref.Version && m.SHA256 == ref.SHA256
	}
}
