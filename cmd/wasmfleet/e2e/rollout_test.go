package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

const group = "greenhouse"

// TestRolloutConverges runs `wasmfleet serve` and `wasmfleet rollout` as an operator would:
// threshold-alert 1.0.0 is rolled out to six agents (new to the group), then 1.1.0 over it
// in waves of 34, 67 and 100% with no soak. Each wave's desired state is published once, in
// order; every agent ends on 1.1.0, healthy; the rollout is completed, and `rollout status`
// and `rollout list` say so.
func TestRolloutConverges(t *testing.T) {
	w := newWorld(t, nil)
	devices := w.startAgents("pi", 6, group)
	v1 := w.publishRelease(thresholdAlert(t, "1.0.0"))
	v11 := w.publishRelease(thresholdAlert(t, "1.1.0"))

	ctx, cancel := context.WithCancel(context.Background())
	serveDone := make(chan int, 1)
	var serveOut, serveErr string
	go func() {
		code, out, errs := w.cliCtx(ctx, "serve", "--rollout-key", w.dir+"/rollout.key", "--trust", w.dir+"/root.json",
			"--broker", w.mq.URL(), "--id", "ctl-e2e", "--interval", "500ms", "--sync-idle", "300ms", "--http", "127.0.0.1:0")
		serveOut, serveErr = out, errs
		serveDone <- code
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-serveDone; code != 0 {
			t.Errorf("wasmfleet serve: exit %d\n%s%s", code, serveOut, serveErr)
		}
	})

	// 1.0.0, new to the group: without a broker, start reads the group's last rollout in
	// the bucket (none), so it needs --new.
	code, _, errs := w.cli("rollout", "start", "--release", "threshold-alert@1.0.0", "--group", group, "--waves", "100")
	if code != 1 || !strings.Contains(errs, "group greenhouse has no desired state") || !strings.Contains(errs, "--new") {
		t.Fatalf("start without --previous or --new: exit %d, %s", code, errs)
	}
	w.mustCLI("rollout", "start", "--release", "threshold-alert@1.0.0", "--group", group, "--waves", "100",
		"--soak", "0s", "--min-devices", "1", "--new", "--id", "seed")
	w.waitAllRun(devices, "threshold-alert", "1.0.0", 30*time.Second)
	w.waitState("seed", rollout.Completed, 15*time.Second)

	// 1.1.0 over it: the previous release comes from the broker's retained desired state.
	waves := []float64{34, 67, 100}
	id := pickID(t, "conv", devices, waves, []int{2, 4, 6})
	out := w.mustCLI("rollout", "start", "--release", "threshold-alert@1.1.0", "--group", group, "--waves", "34,67,100",
		"--soak", "0s", "--max-failure", "0%", "--min-devices", "1", "--timeout", "1m", "--id", id, "--broker", w.mq.URL())
	if !strings.Contains(out, "started rollout "+id+": threshold-alert 1.1.0 over 1.0.0 in group greenhouse") {
		t.Fatalf("rollout start printed:\n%s", out)
	}
	start := time.Now()
	r := w.waitState(id, rollout.Completed, 45*time.Second)
	t.Logf("6 devices through 3 waves in %v", time.Since(start).Round(time.Millisecond))
	w.waitAllRun(devices, "threshold-alert", "1.1.0", 10*time.Second)
	for _, d := range devices {
		healthy := false
		for _, e := range w.events(d) {
			if e.Kind == report.EventHealthy && e.Version == "1.1.0" && e.Rollout == id {
				healthy = true
			}
		}
		if !healthy {
			t.Errorf("%s never reported 1.1.0 healthy: %+v", d, w.events(d))
		}
	}
	if r.Wave != 2 || r.Previous == nil || *r.Previous != v1 || r.Release != v11 || r.Last.Step != 7 {
		t.Fatalf("final document: %+v", r)
	}

	// One desired state per wave, in order, each a new sequence.
	var percents []float64
	var seqs []uint64
	for _, p := range w.desiredHistory(group) {
		m, ok := target(&p.d, "threshold-alert")
		if !ok || m.Rollout != id {
			continue
		}
		if len(seqs) > 0 && seqs[len(seqs)-1] == p.d.Sequence {
			continue // the same message again (a retained copy): allowed, not a new wave
		}
		percents, seqs = append(percents, m.WavePercent), append(seqs, p.d.Sequence)
		if m.Previous == nil || *m.Previous != v1 || m.Release != v11 || m.Rollback {
			t.Errorf("desired state %d: %+v", p.d.Sequence, m)
		}
	}
	if !slices.Equal(percents, waves) || !slices.IsSorted(seqs) {
		t.Fatalf("desired states of the rollout: percents %v, sequences %v; want one per wave %v", percents, seqs, waves)
	}
	// An audit record follows the document of its transition: wait for the last.
	waitFor(t, 10*time.Second, func() bool { return len(w.auditSteps(id)) >= 7 },
		func() string { return fmt.Sprintf("audit records of %s: %v", id, w.auditSteps(id)) })
	if got := w.auditSteps(id); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("audit records of %s: steps %v", id, got)
	}

	out = w.mustCLI("rollout", "status", id, "--broker", w.mq.URL())
	t.Logf("wasmfleet rollout status %s:\n%s", id, out)
	for _, want := range []string{"state:   completed, wave 3 of 3 (100%)", "1     34%      passed", "2     67%      passed",
		"3     100%     completed", "history:", "started by"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	// --watch on a finished rollout prints once and exits 0.
	if code, out, errs := w.cli("rollout", "status", id, "--watch"); code != 0 || strings.Count(out, "rollout "+id) != 1 {
		t.Errorf("status --watch of a completed rollout: exit %d\n%s%s", code, out, errs)
	}
	out = w.mustCLI("rollout", "list")
	if !strings.Contains(out, "seed") || !strings.Contains(out, id) || strings.Count(out, "completed") != 2 {
		t.Errorf("rollout list:\n%s", out)
	}
	// A completed rollout cannot be paused.
	if code, _, errs := w.cli("rollout", "pause", id); code != 2 || !strings.Contains(errs, "error: state:") {
		t.Errorf("pause a completed rollout: exit %d, %s", code, errs)
	}
	if !bytes.Contains(w.messages(w.topics.GroupDesired(group))[len(w.messages(w.topics.GroupDesired(group)))-1], []byte("payload")) {
		t.Fatal("the last desired state is not an envelope")
	}
}
