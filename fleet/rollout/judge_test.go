package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
)

func judged(r *Rollout) *Rollout {
	r.Desired, r.Published = nil, false
	return r
}

func TestJudge(t *testing.T) {
	r := judged(fixture(t)) // release 1.3.0, previous 1.2.0, rollout r-42, wave started t0
	mod := func(m report.ModuleStatus) *report.Status {
		m.Name = testModule
		return &report.Status{Device: "d", Online: true, Time: t0, Groups: []string{testGroup}, Modules: []report.ModuleStatus{m}}
	}
	ev := func(kind string, at time.Duration, f ...func(*Observed)) Observed {
		o := Observed{Event: report.Event{Device: "d", Kind: kind, Module: testModule, Version: "1.3.0", Rollout: "r-42",
			Time: t0.Add(at)}, Received: t0.Add(at)}
		for _, g := range f {
			g(&o)
		}
		return o
	}
	refused := func(o *Observed) {
		o.Module, o.Version, o.Rollout, o.Source, o.Reason, o.ErrorKind = "", "", "", "group/"+testGroup, "bad key", "unknown-key"
	}
	for _, c := range []struct {
		name   string
		status *report.Status
		events []Observed
		want   Outcome
		reason string
	}{
		{"nothing", nil, nil, Unknown, ""},
		{"still on previous", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateActive}), nil, Unknown, ""},
		{"healthy", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateActive, Rollout: "r-42"}), nil, Healthy, ""},
		{"healthy from an older rollout", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateActive, Rollout: "r-1"}), nil, Healthy, ""},
		{"same version, other digest", mod(report.ModuleStatus{Version: "1.3.0", SHA256: strings.Repeat("ab", 32), State: report.StateActive}), nil, Unknown, ""},
		{"health window", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateHealthCheck}), nil, Pending, "health window"},
		{"downloading", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateDownloading}), nil, Pending, "downloading"},
		{"rolled back", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateRolledBack, Rollout: "r-42", Reason: "trap"}), nil, Failed, "rolled back: trap"},
		{"rolled back in another rollout", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateRolledBack, Rollout: "r-1"}), nil, Unknown, ""},
		{"install failed, old runs", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateActive, Target: "1.3.0", Reason: "digest"}), nil, Failed, "install failed: digest"},
		{"install failed, nothing runs", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateFailed, Reason: "policy"}), nil, Failed, "install failed: policy"},
		{"healthy event", nil, []Observed{ev(report.EventActivated, 0), ev(report.EventHealthy, time.Second)}, Healthy, ""},
		{"activated only", nil, []Observed{ev(report.EventActivated, 0)}, Pending, "activated"},
		{"failed event", nil, []Observed{ev(report.EventFailed, 0, func(o *Observed) { o.Reason = "x" })}, Failed, "install failed: x"},
		{"event of another rollout", nil, []Observed{ev(report.EventFailed, 0, func(o *Observed) { o.Rollout = "r-1" })}, Unknown, ""},
		{"event of another version", nil, []Observed{ev(report.EventFailed, 0, func(o *Observed) { o.Version = "1.2.9" })}, Unknown, ""},
		{"refused", nil, []Observed{ev(report.EventRefused, time.Second, refused)}, Failed, "refused the desired state: bad key"},
		{"refused before the wave", nil, []Observed{ev(report.EventRefused, -time.Second, refused)}, Unknown, ""},
		{"refused as a replay", nil, []Observed{ev(report.EventRefused, time.Second, refused, func(o *Observed) { o.ErrorKind = "replay" })}, Unknown, ""},
		{"refused for another group", nil, []Observed{ev(report.EventRefused, time.Second, refused, func(o *Observed) { o.Source = "group/x" })}, Unknown, ""},
		{"newer event wins", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateHealthCheck}),
			[]Observed{ev(report.EventRolledBack, time.Second)}, Failed, "rolled back"},
		{"newer status wins", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateActive}),
			[]Observed{ev(report.EventFailed, -time.Second)}, Healthy, ""},
		{"a tie goes to the status", mod(report.ModuleStatus{Version: "1.3.0", State: report.StateActive}),
			[]Observed{ev(report.EventFailed, 0)}, Healthy, ""},
		{"an unknown status does not hide an event", mod(report.ModuleStatus{Version: "1.2.0", State: report.StateActive}),
			[]Observed{ev(report.EventFailed, -time.Second)}, Failed, "install failed"},
	} {
		v := Judge(r, &Device{ID: "d", Status: c.status, Events: c.events})
		if v.Outcome != c.want || !strings.Contains(v.Reason, c.reason) {
			t.Errorf("%s: %v %q, want %v %q", c.name, v.Outcome, v.Reason, c.want, c.reason)
		}
	}

	// Once aborted, healthy means back on the previous release.
	r.State, r.AbortReason = Aborted, "x"
	for _, c := range []struct {
		status *report.Status
		want   Outcome
	}{
		{mod(report.ModuleStatus{Version: "1.2.0", State: report.StateActive}), Healthy},
		{mod(report.ModuleStatus{Version: "1.2.0", State: report.StateRolledBack, Rollout: "r-42"}), Healthy},
		{mod(report.ModuleStatus{Version: "1.3.0", State: report.StateActive}), Unknown},
	} {
		if v := Judge(r, &Device{ID: "d", Status: c.status}); v.Outcome != c.want {
			t.Errorf("aborted, %+v: %v, want %v", c.status.Modules[0], v.Outcome, c.want)
		}
	}
	r.Previous = nil
	if v := Judge(r, &Device{ID: "d", Status: &report.Status{Device: "d"}}); v.Outcome != Healthy {
		t.Errorf("aborted new module, removed: %v", v.Outcome)
	}
}

// devicesFor makes n devices of testGroup in the wave of pct of rollout id, with the given
// outcomes: healthy (h), failed (f), pending (p) and unknown for the rest.
func devicesFor(id string, pct float64, n, h, f, p int) []Device {
	var out []Device
	for i := 0; len(out) < n; i++ {
		dev := fmt.Sprintf("dev-%05d", i)
		if !wave.InWave(dev, id, pct) {
			continue
		}
		st := &report.Status{Device: dev, Online: true, Time: t0, Groups: []string{testGroup}}
		m := report.ModuleStatus{Name: testModule, Version: "1.2.0", State: report.StateActive}
		switch k := len(out); {
		case k < h:
			m.Version = "1.3.0"
		case k < h+f:
			m.State, m.Rollout = report.StateRolledBack, id
		case k < h+f+p:
			m.State = report.StateDownloading
		}
		st.Modules = []report.ModuleStatus{m}
		out = append(out, Device{ID: dev, Status: st})
	}
	// A device of another group, in the wave, never counts.
	out = append(out, Device{ID: "stranger", Status: &report.Status{Device: "stranger", Groups: []string{"other"}}})
	return out
}

func TestStepAbortGate(t *testing.T) {
	for _, c := range []struct {
		name       string
		wave       int
		n, h, f, p int
		min        int
		max        float64
		timedOut   bool
		want       State
	}{
		{"below the gate", 0, 10, 5, 3, 2, 10, 0.05, false, Running},
		{"at the gate", 0, 10, 0, 3, 7, 3, 0.05, false, Aborted},
		{"ratio at the limit", 0, 20, 19, 1, 0, 3, 0.05, false, Soaking},
		{"ratio above the limit", 0, 20, 18, 2, 0, 3, 0.05, false, Aborted},
		{"all judged, below the gate: passes", 0, 4, 2, 2, 0, 5, 0.05, false, Soaking},
		{"last wave smaller than the gate: judged on all", 3, 2, 0, 2, 0, 5, 0.05, false, Aborted},
		{"last wave smaller than the gate: waits for all", 3, 2, 0, 1, 1, 5, 0.05, false, Running},
		{"last wave smaller than the gate: one of two fails", 3, 2, 1, 1, 0, 5, 0.05, false, Aborted},
		{"pending becomes silent", 0, 10, 8, 0, 2, 3, 0.1, true, Aborted},
		{"silent within the limit", 0, 10, 9, 0, 1, 3, 0.1, true, Soaking},
		{"no devices at all", 0, 0, 0, 0, 0, 3, 0.05, false, Soaking},
		{"zero tolerance", 1, 30, 29, 1, 0, 1, 0, false, Aborted},
	} {
		r := judged(fixture(t))
		r.Wave, r.Last.Wave, r.MinDevices, r.MaxFailure = c.wave, c.wave, c.min, c.max
		r.WaveStarted = t0
		now := t0.Add(time.Minute)
		if c.timedOut {
			now = t0.Add(time.Duration(r.Timeout))
		}
		devs := devicesFor(r.ID, r.Waves[c.wave], c.n, c.h, c.f, c.p)
		next := Step(r, now, devs)
		got := r.State
		if next != nil {
			got = next.State
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s (%+v)", c.name, got, c.want, Evaluate(r, now, devs))
			continue
		}
		if next == nil {
			continue
		}
		if next.Last.Step != r.Last.Step+1 || next.Last.From != Running || next.Last.Tally == nil || next.Last.Tally.Expected != c.n {
			t.Errorf("%s: transition %+v", c.name, next.Last)
		}
		if got == Aborted && (next.Desired != nil || next.Published || !next.WaveStarted.IsZero() || next.AbortReason == "") {
			t.Errorf("%s: abort must drop the wave's desired state: %+v", c.name, next)
		}
		if _, err := next.Marshal(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestStepTimeline(t *testing.T) {
	r := judged(fixture(t))
	r.Wave, r.Last.Wave = 0, 0
	devs := devicesFor(r.ID, 1, 5, 5, 0, 0)
	// Not judged before the desired state is out.
	r.WaveStarted = time.Time{}
	if n := Step(r, t0, devs); n != nil {
		t.Fatalf("stepped before publishing: %s", n.State)
	}
	r.WaveStarted = t0
	s := Step(r, t0, devs)
	if s == nil || s.State != Soaking || !s.SoakUntil.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("wave 1 healthy: %+v", s)
	}
	s.Desired, s.Published = []byte("kept"), true
	if n := Step(s, t0.Add(10*time.Minute-time.Nanosecond), devs); n != nil {
		t.Fatalf("left the soak early: %s", n.State)
	}
	n := Step(s, t0.Add(10*time.Minute), devs)
	if n == nil || n.State != Running || n.Wave != 1 || n.Desired != nil || !n.WaveStarted.IsZero() || !n.SoakUntil.IsZero() {
		t.Fatalf("after the soak: %+v", n)
	}
	// Last wave soaked: completed, content unchanged.
	s.Wave, s.Last.Wave = 3, 3
	c := Step(s, t0.Add(time.Hour), devicesFor(r.ID, 100, 5, 5, 0, 0))
	if c == nil || c.State != Completed || string(c.Desired) != "kept" || !c.Published {
		t.Fatalf("after the last soak: %+v", c)
	}
	if Step(c, t0.Add(48*time.Hour), nil) != nil {
		t.Error("a completed rollout stepped")
	}
	// Paused: no progress, but failures still abort.
	p := judged(fixture(t))
	p.State, p.Last.To = Paused, Paused
	if n := Step(p, t0.Add(time.Hour), devicesFor(p.ID, 10, 10, 10, 0, 0)); n != nil {
		t.Errorf("paused rollout moved to %s", n.State)
	}
	if n := Step(p, t0.Add(time.Hour), devicesFor(p.ID, 10, 10, 5, 5, 0)); n == nil || n.State != Aborted {
		t.Error("paused rollout did not abort on failures")
	}
}

func TestEvaluateListsFailuresInOrder(t *testing.T) {
	r := judged(fixture(t))
	r.WaveStarted = t0
	devs := devicesFor(r.ID, 10, 40, 0, 15, 0)
	a := Evaluate(r, t0, devs)
	// Reversed input: same tally, same names.
	rev := make([]Device, len(devs))
	for i, d := range devs {
		rev[len(devs)-1-i] = d
	}
	b := Evaluate(r, t0, rev)
	if fmt.Sprint(a) != fmt.Sprint(b) || len(a.Failures) != MaxListed || a.Failed != 15 {
		t.Errorf("%+v\n%+v", a, b)
	}
	reason := abortReason(r, &a)
	if !strings.Contains(reason, "15 of 15") || !strings.Contains(reason, "and 12 more") {
		t.Errorf("reason %q", reason)
	}
}
