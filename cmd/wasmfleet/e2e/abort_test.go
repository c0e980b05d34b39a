package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// TestRolloutAborts rolls out a threshold-alert 1.1.0 that traps on every event over 1.0.0,
// in waves of 34, 67 and 100%. Wave 1 holds three of the six agents: two get sensor
// readings, trap, and roll back locally within their health window; the third gets none,
// passes its window and runs 1.1.0. The controller sees two of three fail, aborts, and
// publishes 1.0.0 to 100% of the group with the rollback flag: the device that was updated
// goes back too, wave 2 is never published, every device ends on 1.0.0, and the reason is
// in the rollout document, the audit record and `rollout status`.
func TestRolloutAborts(t *testing.T) {
	w := newWorld(t, nil)
	devices := w.startAgents("pi", 6, group)
	v1 := w.publishRelease(thresholdAlert(t, "1.0.0"))
	manifest, _ := thresholdAlert(t, "1.1.0")
	bad := w.publishRelease(manifest, trapWasm(t))
	srv, _ := w.runController(w.controllerConfig("ctl-abort"))
	w.seed(srv.Controller(), "seed", group, v1, devices)

	waves := []float64{34, 67, 100}
	id := pickID(t, "abort", devices, waves, []int{3, 4, 6})
	wave1 := inWave(devices, id, 34)
	trapping, quiet := wave1[:2], wave1[2]
	w.sensors(trapping)
	out := w.mustCLI("rollout", "start", "--release", "threshold-alert@1.1.0", "--group", group, "--waves", "34,67,100",
		"--soak", "0s", "--max-failure", "5%", "--min-devices", "3", "--timeout", "1m", "--id", id, "--broker", w.mq.URL())
	if !strings.Contains(out, "over 1.0.0") {
		t.Fatalf("rollout start:\n%s", out)
	}

	// The quiet device passes its window on 1.1.0 before the abort sends it back.
	waitFor(t, 30*time.Second, func() bool {
		for _, e := range w.events(quiet) {
			if e.Kind == report.EventHealthy && e.Version == "1.1.0" {
				return true
			}
		}
		return false
	}, func() string { return quiet + " healthy on 1.1.0" })
	for _, d := range trapping {
		waitFor(t, 30*time.Second, func() bool {
			for _, e := range w.events(d) {
				if e.Kind == report.EventRolledBack && e.Version == "1.1.0" && e.Rollout == id && e.ErrorKind == "trap" {
					return true
				}
			}
			return false
		}, func() string { return d + " rolled back from 1.1.0 (trap)" })
	}

	r := w.waitState(id, rollout.Aborted, 30*time.Second)
	if r.Wave != 0 || !strings.Contains(r.AbortReason, "wave 1 (34%): 2 of 3 devices that reported failed") ||
		!strings.Contains(r.AbortReason, "rolled back") || r.Last.Actor != rollout.ActorController {
		t.Fatalf("aborted document: wave %d, reason %q, by %s", r.Wave, r.AbortReason, r.Last.Actor)
	}
	w.waitAllRun(devices, "threshold-alert", "1.0.0", 30*time.Second, report.StateActive, report.StateRolledBack)
	for _, d := range trapping {
		if !w.runs(d, "threshold-alert", "1.0.0", report.StateRolledBack) {
			t.Errorf("%s: %+v", d, w.lastStatus(d))
		}
	}
	// The updated device went back because the abort told it to, not by itself.
	if m, _ := moduleOf(w.lastStatus(quiet), "threshold-alert"); m.State != report.StateActive {
		t.Errorf("%s: %+v", quiet, m)
	}
	back := false
	for _, e := range w.events(quiet) {
		if e.Kind == report.EventActivated && e.Version == "1.0.0" && e.Rollout == id {
			back = true
		}
	}
	if !back {
		t.Errorf("%s did not activate 1.0.0 for rollout %s: %+v", quiet, id, w.events(quiet))
	}

	// Wave 1, then the revert; never wave 2.
	var seen []string
	for _, p := range w.desiredHistory(group) {
		m, ok := target(&p.d, "threshold-alert")
		if !ok || m.Rollout != id {
			continue
		}
		switch {
		case m.Release == bad && m.WavePercent == 34 && !m.Rollback:
			seen = appendNew(seen, "wave 1")
		case m.Release == v1 && m.WavePercent == 100 && m.Rollback:
			seen = appendNew(seen, "revert")
		default:
			t.Errorf("unexpected desired state %d: %+v", p.d.Sequence, m)
		}
	}
	if strings.Join(seen, ",") != "wave 1,revert" {
		t.Fatalf("desired states of the rollout: %v", seen)
	}
	// An audit record follows the document of its transition: wait for the abort's.
	waitFor(t, 10*time.Second, func() bool { return len(w.auditSteps(id)) >= 2 },
		func() string { return fmt.Sprintf("audit records of %s: %v", id, w.auditSteps(id)) })
	if steps := w.auditSteps(id); len(steps) != 2 || steps[0] != 1 || steps[1] != 2 {
		t.Fatalf("audit steps %v; want the start and the abort", steps)
	}

	out = w.mustCLI("rollout", "status", id, "--broker", w.mq.URL())
	t.Logf("wasmfleet rollout status %s:\n%s", id, out)
	for _, want := range []string{"state:   aborted, wave 1 of 3 (34%): every device back to 1.0.0 (published)", "aborted: " + r.AbortReason,
		"2     67%      never opened", "revert:  6 of 6 devices of the group back on 1.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := w.cli("rollout", "status", id, "--watch"); code != 2 || !strings.Contains(errs, "error: aborted: rollout "+id+": wave 1") {
		t.Errorf("status --watch of an aborted rollout: exit %d, %s", code, errs)
	}
}

func appendNew(s []string, v string) []string {
	if len(s) > 0 && s[len(s)-1] == v {
		return s
	}
	return append(s, v)
}
