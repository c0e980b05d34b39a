package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/signing"
)

func TestHappyPathFourWaves(t *testing.T) {
	h := newHarness(t, 1000, nil)
	c := h.controller("ctl-a")
	h.start(c, h.spec("r-happy"))
	r := h.run(c, "r-happy", 200)

	if r.State != Completed || r.Wave != 3 {
		t.Fatalf("state %s wave %d, want completed in wave 4", r.State, r.Wave+1)
	}
	if got, want := h.percents(), []string{"1", "10", "50", "100"}; !slices.Equal(got, want) {
		t.Errorf("published waves %v, want %v", got, want)
	}
	ds := h.desiredStates()
	for i, d := range ds {
		if d.Sequence != uint64(6+i) {
			t.Errorf("desired state %d has sequence %d, want %d (the group's 5, continued)", i, d.Sequence, 6+i)
		}
		if len(d.Modules) != 2 || d.Modules[0].Release != h.other || d.Modules[0].WavePercent != 100 {
			t.Errorf("desired state %d does not carry the group's other module unchanged: %+v", d.Sequence, d.Modules)
		}
		m := d.Modules[1]
		if m.Release != h.rel || m.Previous == nil || *m.Previous != h.prev || m.Rollout != "r-happy" || m.Rollback {
			t.Errorf("desired state %d: module target %+v", d.Sequence, m)
		}
	}
	if n := h.on(h.rel.Version); n != 1000 {
		t.Errorf("%d devices run %s, want 1000", n, h.rel.Version)
	}
	if len(h.refusals) > 0 {
		t.Errorf("agents refused: %v", h.refusals[:min(3, len(h.refusals))])
	}
	recs := h.audits("r-happy")
	want := "running/1 soaking/1 running/2 soaking/2 running/3 soaking/3 running/4 soaking/4 completed/4"
	if got := path(recs); got != want {
		t.Errorf("audit trail\n got %s\nwant %s", got, want)
	}
	// Each wave opens only after the soak of the one before.
	for i := 1; i < len(recs); i++ {
		if recs[i].From == Soaking && recs[i].Time.Sub(recs[i-1].Time) < 10*time.Minute {
			t.Errorf("step %d left soaking after %s, before the 10m soak", recs[i].Step, recs[i].Time.Sub(recs[i-1].Time))
		}
	}
	// The tally of each passed wave counts its devices, all healthy.
	for _, rec := range recs {
		if rec.To == Soaking && (rec.Tally == nil || rec.Tally.Healthy != rec.Tally.Expected || rec.Tally.Failed+rec.Tally.Silent != 0) {
			t.Errorf("step %d: tally %+v", rec.Step, rec.Tally)
		}
	}
	if recs[len(recs)-2].Tally.Expected != 1000 {
		t.Errorf("the last wave judged %d devices, want 1000", recs[len(recs)-2].Tally.Expected)
	}
}

// TestAbortWaveOne: 10% of the first wave's devices fail; wave 2 never opens and every device
// of the group, the healthy ones of wave 1 included, is sent back to the previous release.
func TestAbortWaveOne(t *testing.T) {
	for _, c := range []struct {
		does behavior
		why  string
	}{
		{failHealth, "rolled back: release 1.3.0 failed its health window"},
		{failInstall, "install failed: download module: connection reset"},
		{refuse, "refused the desired state: unknown key"},
	} {
		t.Run(fmt.Sprint(c.does), func(t *testing.T) {
			const id = "r-abort"
			probe := newHarness(t, 1000, nil)
			wave1 := probe.members(id, 1)
			bad := map[string]bool{}
			for _, d := range wave1[:max(1, len(wave1)/10)] {
				bad[d.id] = true
			}
			h := newHarness(t, 1000, func(id string) behavior {
				if bad[id] {
					return c.does
				}
				return good
			})
			ctl := h.controller("ctl-a")
			h.start(ctl, h.spec(id))
			r := h.run(ctl, id, 100)

			if r.State != Aborted || r.Wave != 0 {
				t.Fatalf("state %s wave %d, want aborted in wave 1", r.State, r.Wave+1)
			}
			if got, want := h.percents(), []string{"1", "R1.2.0"}; !slices.Equal(got, want) {
				t.Fatalf("published %v, want %v (wave 2 never)", got, want)
			}
			t.Logf("wave 1: %d devices, %d failing; reason: %s", len(wave1), len(bad), r.AbortReason)
			if !strings.Contains(r.AbortReason, "wave 1 (1%)") || !strings.Contains(r.AbortReason, c.why) {
				t.Errorf("abort reason %q does not say wave 1 and %q", r.AbortReason, c.why)
			}
			revert := h.desiredStates()[1]
			m := revert.Modules[1]
			if m.Release != h.prev || !m.Rollback || m.WavePercent != 100 || m.Previous != nil || revert.Modules[0].Release != h.other {
				t.Errorf("revert desired state %+v", revert.Modules)
			}
			if n := h.on(h.prev.Version); n != 1000 {
				t.Errorf("%d devices back on %s, want all 1000", n, h.prev.Version)
			}
			if h.reverted != len(wave1)-len(bad) {
				t.Errorf("%d devices went back from %s; wave 1 had %d healthy", h.reverted, h.rel.Version, len(wave1)-len(bad))
			}
			if len(h.refusals) > 0 {
				t.Errorf("agents refused: %v", h.refusals)
			}
			recs := h.audits(id)
			if got := path(recs); got != "running/1 aborted/1" {
				t.Errorf("audit trail %s", got)
			}
			if last := recs[len(recs)-1]; last.Reason != r.AbortReason || last.Actor != ActorController || last.Tally == nil || last.Tally.Failed != len(bad) {
				t.Errorf("abort audit record %+v", last)
			}
			// The revert's progress: every device of the group is back.
			tl := Evaluate(r, h.clock.Now(), h.tracker.Devices(testGroup))
			if tl.Expected != 1000 || tl.Healthy != 1000 {
				t.Errorf("revert tally %+v", tl)
			}
		})
	}
}

func (b behavior) String() string {
	return [...]string{"good", "fail-install", "fail-health", "silent", "refuse"}[b]
}

// TestMinDevicesGate: with fewer devices reported than MinDevices, failures do not abort;
// the next, larger wave judges the same devices again with more beside them.
func TestMinDevicesGate(t *testing.T) {
	const id = "r-gate"
	probe := newHarness(t, 1000, nil)
	wave1 := probe.members(id, 1)
	if len(wave1) < 4 {
		t.Fatalf("wave 1 has %d devices", len(wave1))
	}
	bad := map[string]bool{wave1[0].id: true, wave1[1].id: true} // 2 of ~10: 20%
	for _, c := range []struct {
		min      int
		abortsIn int
	}{
		{min: 3, abortsIn: 1},  // the gate is reached in wave 1
		{min: 50, abortsIn: 2}, // only wave 2 has 50 reported, and 2+10% of it fail
	} {
		t.Run(fmt.Sprint("min=", c.min), func(t *testing.T) {
			w2 := map[string]bool{}
			for _, d := range probe.members(id, 10) {
				w2[d.id] = true
			}
			n := 0
			h := newHarness(t, 1000, func(dev string) behavior {
				if bad[dev] {
					return failHealth
				}
				if w2[dev] && !slices.ContainsFunc(wave1, func(d *simDevice) bool { return d.id == dev }) {
					if n++; n%10 == 0 {
						return failHealth
					}
				}
				return good
			})
			ctl := h.controller("ctl-a")
			s := h.spec(id)
			s.MinDevices = c.min
			h.start(ctl, s)
			r := h.run(ctl, id, 200)
			if r.State != Aborted || r.Wave != c.abortsIn-1 {
				t.Fatalf("state %s in wave %d, want aborted in wave %d; %s", r.State, r.Wave+1, c.abortsIn, r.AbortReason)
			}
			if !strings.Contains(r.AbortReason, fmt.Sprintf("wave %d (", c.abortsIn)) {
				t.Errorf("abort reason %q", r.AbortReason)
			}
			want := []string{"1", "R1.2.0"}
			if c.abortsIn == 2 {
				want = []string{"1", "10", "R1.2.0"}
				recs := h.audits(id)
				if recs[1].To != Soaking || recs[1].Tally.Failed != 2 {
					t.Errorf("wave 1 should pass the gate with its 2 failures: %+v", recs[1])
				}
			}
			if got := h.percents(); !slices.Equal(got, want) {
				t.Errorf("published %v, want %v", got, want)
			}
		})
	}
}

// TestSilentDevicesAtTimeout: devices that never answer keep the wave open until the
// timeout, then count as failures.
func TestSilentDevicesAtTimeout(t *testing.T) {
	const id = "r-silent"
	probe := newHarness(t, 200, nil)
	wave1 := probe.members(id, 10)
	quiet := map[string]bool{wave1[0].id: true, wave1[1].id: true}
	for _, c := range []struct {
		maxFailure float64
		want       State
	}{
		{0.05, Aborted},
		{0.5, Soaking},
	} {
		t.Run(fmt.Sprint(c.maxFailure), func(t *testing.T) {
			h := newHarness(t, 200, func(dev string) behavior {
				if quiet[dev] {
					return silent
				}
				return good
			})
			ctl := h.controller("ctl-a")
			s := h.spec(id)
			s.Waves, s.MaxFailure = []float64{10, 100}, c.maxFailure
			h.start(ctl, s)
			h.tick(ctl)
			h.deliver()
			started := h.get(id).WaveStarted
			for h.clock.Now().Before(started.Add(30 * time.Minute)) {
				h.tick(ctl)
				if r := h.get(id); r.State != Running {
					t.Fatalf("left running at %s, before the timeout: %s %s", h.clock.Now().Sub(started), r.State, r.Last.Reason)
				}
				h.clock.Advance(time.Minute)
			}
			h.tick(ctl)
			r := h.get(id)
			if r.State != c.want {
				t.Fatalf("at the timeout: %s, want %s (%s)", r.State, c.want, r.Last.Reason)
			}
			tl := r.Last.Tally
			if tl.Silent != 2 || tl.Expected != len(wave1) || tl.Healthy != len(wave1)-2 {
				t.Errorf("tally %+v", tl)
			}
			if c.want == Aborted && !strings.Contains(r.AbortReason, "2 of them silent") {
				t.Errorf("abort reason %q", r.AbortReason)
			}
		})
	}
}

// TestFanOut: a rollout publishes one message per wave for the group, however many devices.
func TestFanOut(t *testing.T) {
	for _, n := range []int{10, 1000} {
		h := newHarness(t, n, nil)
		c := h.controller("ctl-a")
		h.start(c, h.spec("r-fan"))
		h.run(c, "r-fan", 200)
		if got := len(h.broker.log); got != 4 {
			t.Errorf("%d devices: %d publishes, want 4 (one per wave)", n, got)
		}
		t.Logf("%d devices: %d publishes, %d store reads, %d writes, %d lists", n, len(h.broker.log), h.store.gets, h.store.puts, h.store.lists)
	}
}

// crashRun runs a rollout of 40 devices (bad chooses the failing ones) where the mutating
// operation number at crashes (before it takes effect, or after), restarts the controller
// and finishes the rollout. It returns the harness for checks.
func crashRun(t *testing.T, at int, after bool, sameID bool, does func(string) behavior) (*harness, *Rollout) {
	t.Helper()
	h := newHarness(t, 40, does)
	f := &faults{at: at, after: after}
	h.store.faults, h.broker.faults = f, f
	c := h.controller("ctl-a")
	s := h.spec("r-crash")
	s.Waves = []float64{10, 50, 100}
	s.MinDevices, s.Soak = 1, 2*time.Minute
	if _, err := c.Start(context.Background(), s); err != nil {
		if !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
		c = h.restart(c, sameID)
		if _, err := c.Get(context.Background(), "r-crash"); err != nil {
			// The crash came before the document was written: start again.
			if _, err := c.Start(context.Background(), s); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 300 {
		if err := c.Tick(context.Background()); err != nil {
			if !errors.Is(err, errCrash) {
				t.Fatal(err)
			}
			c = h.restart(c, sameID)
			continue
		}
		h.deliver()
		if r := h.get("r-crash"); r.State.Final() && r.Published {
			return h, r
		}
		h.clock.Advance(time.Minute)
	}
	t.Fatalf("crash at %d: rollout not finished", at)
	return nil, nil
}

// restart replaces a controller that crashed: same id, or a new one (which waits out the
// lease of the dead one).
func (h *harness) restart(_ *Controller, sameID bool) *Controller {
	if sameID {
		return h.controller("ctl-a")
	}
	return h.controller("ctl-b")
}

// TestRestartAtEveryPoint kills the controller at every store write and every publish, just
// before it takes effect and just after, and restarts it: the rollout ends as it would have,
// with no wave skipped or repeated, no sequence published with two payloads, no refusal by
// an agent, and one audit record per transition.
func TestRestartAtEveryPoint(t *testing.T) {
	for _, sc := range []struct {
		name  string
		does  func(string) behavior
		final State
		waves []string
		trail string
	}{
		{"completes", nil, Completed, []string{"10", "50", "100"},
			"running/1 soaking/1 running/2 soaking/2 running/3 soaking/3 completed/3"},
		{"aborts", func(id string) behavior {
			if id == "dev-0003" || id == "dev-0010" { // in wave 2 (50%) of r-crash, not in wave 1
				return failHealth
			}
			return good
		}, Aborted, []string{"10", "50", "R1.2.0"},
			"running/1 soaking/1 running/2 aborted/2"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			// A clean run counts the operations.
			h, r := crashRun(t, -1, false, true, sc.does)
			total := h.store.puts + len(h.broker.log)
			if r.State != sc.final {
				t.Fatalf("clean run: %s (%s)", r.State, r.AbortReason)
			}
			if got := h.percents(); !slices.Equal(got, sc.waves) {
				t.Fatalf("clean run published %v, want %v", got, sc.waves)
			}
			for at := 1; at <= total; at++ {
				for _, after := range []bool{false, true} {
					h, r := crashRun(t, at, after, at%2 == 0, sc.does)
					where := fmt.Sprintf("crash at operation %d of %d (after=%v)", at, total, after)
					if r.State != sc.final {
						t.Fatalf("%s: %s", where, r.State)
					}
					if got := h.percents(); !slices.Equal(got, sc.waves) {
						t.Fatalf("%s: published %v, want %v", where, got, sc.waves)
					}
					if len(h.refusals) > 0 {
						t.Fatalf("%s: agents refused %v", where, h.refusals)
					}
					if got := path(h.audits("r-crash")); got != sc.trail {
						t.Fatalf("%s: audit trail\n got %s\nwant %s", where, got, sc.trail)
					}
					want := h.rel.Version
					if sc.final == Aborted {
						want = h.prev.Version
					}
					if n := h.on(want); n != len(h.devices) {
						t.Fatalf("%s: %d of %d devices on %s", where, n, len(h.devices), want)
					}
				}
			}
		})
	}
}

// TestTwoControllersRace: two controllers read the same document; one writes first, the
// other's conditional write fails and it backs off. Then the lease keeps the loser away
// until the winner stops; then it takes over and finishes.
func TestTwoControllersRace(t *testing.T) {
	h := newHarness(t, 200, nil)
	a, b := h.controller("ctl-a"), h.controller("ctl-b")
	h.start(a, h.spec("r-race"))

	// b's first write happens between a's read and a's write.
	raced := false
	h.store.beforePut = func(key string) {
		if raced || !strings.HasPrefix(key, "rollouts/") {
			return
		}
		raced = true
		h.store.beforePut = nil
		h.tick(b)
	}
	h.tick(a)
	if !raced {
		t.Fatal("no write to race with")
	}
	r := h.get("r-race")
	if r.Owner != "ctl-b" || !r.Published || r.Sequence != 6 {
		t.Fatalf("after the race: owner %s, published %v, sequence %d; want ctl-b's write of 6, published", r.Owner, r.Published, r.Sequence)
	}
	if n := len(h.broker.log); n != 1 {
		t.Fatalf("%d publishes after the race, want 1: the loser must not publish", n)
	}

	// While b holds the lease, a leaves the rollout alone, whatever happens.
	for range 5 {
		h.deliver()
		h.tick(a)
		if got := h.get("r-race"); got.Owner != "ctl-b" || !got.Updated.Equal(r.Updated) {
			t.Fatalf("a wrote while b held the lease: owner %s, step %d, updated %s", got.Owner, got.Last.Step, got.Updated)
		}
		h.clock.Advance(5 * time.Second)
	}
	h.tick(b)
	// Both tick from now on, in turns, as two live controllers would.
	for i := 0; ; i++ {
		if i > 400 {
			t.Fatal("rollout did not finish")
		}
		h.tick(a)
		h.tick(b)
		h.deliver()
		if r := h.get("r-race"); r.State.Final() && r.Published {
			break
		}
		h.clock.Advance(20 * time.Second)
	}
	if got := h.percents(); !slices.Equal(got, []string{"1", "10", "50", "100"}) {
		t.Errorf("published %v", got)
	}
	h.audits("r-race")
	if len(h.refusals) > 0 {
		t.Errorf("agents refused %v", h.refusals)
	}
}

// TestLeaseTakeover: a controller dies right after writing a wave; another, with another
// id, waits for the lease to run out and publishes the very bytes that were written.
func TestLeaseTakeover(t *testing.T) {
	h := newHarness(t, 50, nil)
	a := h.controller("ctl-a")
	h.start(a, h.spec("r-lease"))
	h.broker.faults = &faults{at: 1} // dies just before its first publish
	if err := a.Tick(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("tick: %v", err)
	}
	h.broker.faults = nil
	written := h.get("r-lease")
	if written.Published || written.Desired == nil || written.Owner != "ctl-a" {
		t.Fatalf("after the crash: %+v", written)
	}
	b := h.controller("ctl-b")
	h.tick(b)
	if len(h.broker.log) != 0 {
		t.Fatal("b published while a's lease was valid")
	}
	h.clock.Advance(DefaultLease)
	h.tick(b)
	if len(h.broker.log) != 1 || string(h.broker.log[0].payload) != string(written.Desired) {
		t.Fatal("b did not publish the desired state a had written")
	}
	if r := h.get("r-lease"); r.Owner != "ctl-b" || !r.Published || r.Sequence != written.Sequence {
		t.Fatalf("after takeover: %+v", r)
	}
}

// TestNoPublishOnStaleLease: a controller that stalls between its write and its publish for
// longer than its lease allows does not publish.
func TestNoPublishOnStaleLease(t *testing.T) {
	h := newHarness(t, 10, nil)
	a := h.controller("ctl-a")
	h.start(a, h.spec("r-stall"))
	h.store.beforePut = func(key string) {
		if strings.HasPrefix(key, "rollouts/") {
			h.store.beforePut = nil
			h.clock.Advance(DefaultLease) // a stall during the document write
		}
	}
	h.tick(a)
	if n := len(h.broker.log); n != 0 {
		t.Fatalf("%d publishes on an expired lease", n)
	}
	h.store.beforePut = nil
	h.tick(a)
	if n := len(h.broker.log); n != 1 {
		t.Fatalf("%d publishes after renewing the lease, want 1", n)
	}
}

func TestOperatorPauseResumeAbort(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, 300, nil)
	c := h.controller("ctl-a")
	h.start(c, h.spec("r-op"))
	h.tick(c)
	h.deliver()
	h.tick(c) // wave 1 passed: soaking
	if r := h.get("r-op"); r.State != Soaking {
		t.Fatalf("state %s", r.State)
	}
	if _, err := c.Pause(ctx, "r-op", "bob"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour)
	h.tick(c)
	if r := h.get("r-op"); r.State != Paused || len(h.broker.log) != 1 {
		t.Fatalf("paused rollout moved: %s, %d publishes", r.State, len(h.broker.log))
	}
	if r, err := c.Pause(ctx, "r-op", "bob"); err != nil || r.State != Paused {
		t.Fatalf("pausing again: %v", err)
	}
	if _, err := c.Resume(ctx, "r-op", "bob"); err != nil {
		t.Fatal(err)
	}
	h.tick(c) // judged again: soaking, in full
	if r := h.get("r-op"); r.State != Soaking || !r.SoakUntil.Equal(h.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("after resume: %s until %s", r.State, r.SoakUntil)
	}
	h.clock.Advance(10 * time.Minute)
	h.tick(c)
	h.deliver()
	if got := h.percents(); !slices.Equal(got, []string{"1", "10"}) {
		t.Fatalf("published %v", got)
	}
	r, err := c.Abort(ctx, "r-op", "bob", "customer complaint")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Aborted || r.AbortReason != "aborted by bob: customer complaint" || r.Desired != nil {
		t.Fatalf("after abort: %s %q", r.State, r.AbortReason)
	}
	h.tick(c)
	h.deliver()
	if got := h.percents(); !slices.Equal(got, []string{"1", "10", "R1.2.0"}) {
		t.Fatalf("published %v", got)
	}
	if n := h.on(h.prev.Version); n != 300 {
		t.Errorf("%d devices on %s, want 300", n, h.prev.Version)
	}
	for _, op := range []func() (*Rollout, error){
		func() (*Rollout, error) { return c.Pause(ctx, "r-op", "bob") },
		func() (*Rollout, error) { return c.Resume(ctx, "r-op", "bob") },
	} {
		if _, err := op(); !errors.Is(err, ErrState) {
			t.Errorf("operation on an aborted rollout: %v, want ErrState", err)
		}
	}
	if _, err := c.Abort(ctx, "r-op", "bob", ""); err != nil {
		t.Errorf("aborting again: %v", err)
	}
	if _, err := c.Pause(ctx, "r-op", "bob\n"); err == nil {
		t.Error("an actor with a newline was accepted")
	}
	got := path(h.audits("r-op"))
	if want := "running/1 soaking/1 paused/1 running/1 soaking/1 running/2 aborted/2"; got != want {
		t.Errorf("audit trail\n got %s\nwant %s", got, want)
	}
}

// TestOperatorWinsOverController: an operator's write that loses to a controller's is
// retried on the new version, not lost.
func TestOperatorWinsOverController(t *testing.T) {
	h := newHarness(t, 30, nil)
	c := h.controller("ctl-a")
	h.start(c, h.spec("r-opwin"))
	op := h.controller("cli")
	first := true
	h.store.beforePut = func(key string) {
		if first && strings.HasPrefix(key, "rollouts/") {
			first = false
			h.tick(c) // the controller writes between the operator's read and write
		}
	}
	r, err := op.Pause(context.Background(), "r-opwin", "carol")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Paused || h.get("r-opwin").State != Paused || len(h.broker.log) != 1 {
		t.Fatalf("pause lost: %s", h.get("r-opwin").State)
	}
}

// TestRefresh: a desired state is re-signed (next sequence, same content) before it expires,
// also while paused, and the last rollout of a group keeps doing so once completed.
func TestRefresh(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, 40, nil)
	c := h.controller("ctl-a")
	h.start(c, h.spec("r-old1"))
	h.run(c, "r-old1", 200)
	s := h.spec("r-new")
	s.Release = ref(testModule, "1.4.0", 0x14)
	s.Current = nil
	s.Previous = &h.rel
	h.start(c, s)
	h.tick(c)
	h.deliver()
	if _, err := c.Pause(ctx, "r-new", "dave"); err != nil {
		t.Fatal(err)
	}
	before := len(h.desiredStates())
	h.clock.Advance(DefaultDesiredTTL/2 + time.Minute)
	h.tick(c)
	h.deliver()
	ds := h.desiredStates()
	if len(ds) != before+1 {
		t.Fatalf("%d desired states after half the TTL, want %d", len(ds), before+1)
	}
	last, prev := ds[len(ds)-1], ds[len(ds)-2]
	if last.Sequence != prev.Sequence+1 || !slices.EqualFunc(last.Modules, prev.Modules, func(a, b signing.ModuleTarget) bool {
		return a.Release == b.Release && a.WavePercent == b.WavePercent && a.Rollout == b.Rollout
	}) || !last.Expires.After(prev.Expires) {
		t.Errorf("re-signed state %+v after %+v", last, prev)
	}
	if r := h.get("r-new"); r.State != Paused || r.Last.Reason != "desired state re-signed before it expires" {
		t.Errorf("after refresh: %s %q", r.State, r.Last.Reason)
	}
	if len(h.refusals) > 0 {
		t.Errorf("agents refused %v", h.refusals)
	}
	// r-new aborted is now the group's latest: it is refreshed; r-old1 is not.
	if _, err := c.Abort(ctx, "r-new", "dave", ""); err != nil {
		t.Fatal(err)
	}
	h.tick(c)
	old := h.get("r-old1")
	n := len(h.broker.log)
	h.clock.Advance(DefaultDesiredTTL/2 + time.Minute)
	h.tick(c)
	h.tick(c)
	if len(h.broker.log) != n+1 {
		t.Errorf("%d publishes, want 1 more (the re-signed revert)", len(h.broker.log)-n)
	}
	if got := h.get("r-old1"); got.Sequence != old.Sequence {
		t.Error("a rollout that is not the group's latest was re-signed")
	}
	if got := h.get("r-new"); got.State != Aborted || got.Last.Reason != "desired state re-signed before it expires" {
		t.Errorf("latest rollout: %s %q", got.State, got.Last.Reason)
	}
	h.audits("r-new")
}

// TestNoSequenceCollision: rollouts of one group share its sequence. Here a finished
// rollout is re-signed by another controller while a new one is being started (after Start
// read the sequences, before it wrote): the new one still signs above it.
func TestNoSequenceCollision(t *testing.T) {
	h := newHarness(t, 20, nil)
	a, b := h.controller("ctl-a"), h.controller("ctl-b")
	h.start(a, h.spec("r-first"))
	first := h.run(a, "r-first", 200)
	h.clock.Advance(DefaultLease + DefaultDesiredTTL/2)
	h.store.beforePut = func(key string) {
		if key == "rollouts/r-second.json" {
			h.store.beforePut = nil
			h.tick(b) // re-signs r-first: the only rollout it sees
		}
	}
	s := h.spec("r-second")
	s.Release, s.Current, s.Previous = ref(testModule, "1.4.0", 0x14), nil, &h.rel
	h.start(a, s)
	refreshed := h.get("r-first")
	if refreshed.Sequence != first.Sequence+1 {
		t.Fatalf("r-first not re-signed: %d", refreshed.Sequence)
	}
	for range 3 {
		h.tick(a)
		h.deliver()
		h.clock.Advance(time.Minute)
	}
	if got := h.get("r-first"); got.Sequence != refreshed.Sequence {
		t.Errorf("r-first re-signed again (sequence %d) while r-second runs", got.Sequence)
	}
	if got := h.get("r-second"); got.Sequence != refreshed.Sequence+1 || !got.Published {
		t.Errorf("r-second: sequence %d published %v, want %d", got.Sequence, got.Published, refreshed.Sequence+1)
	}
	h.run(a, "r-second", 200)
	h.desiredStates()
	if len(h.refusals) > 0 {
		t.Errorf("agents refused %v", h.refusals)
	}
	if n := h.on("1.4.0"); n != len(h.devices) {
		t.Errorf("%d devices got r-second's release, want all %d", n, len(h.devices))
	}
}

func TestStart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, 5, nil)
	c := h.controller("cli")
	r := h.start(c, h.spec("r-1"))
	if r.Sequence != 5 || r.Previous == nil || *r.Previous != h.prev || len(r.Base) != 1 || r.Base[0].Release != h.other || r.Desired != nil {
		t.Errorf("started: %+v", r)
	}
	if r.Last.Step != 1 || r.Last.Actor != "alice" || r.State != Running {
		t.Errorf("first transition %+v", r.Last)
	}
	for _, c2 := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"second in the group", func(s *Spec) { s.ID = "r-2" }, "one rollout per group"},
		{"same id", func(s *Spec) { s.Group = "other" }, "exists"},
		{"downgrade", func(s *Spec) { s.ID, s.Release = "r-3", ref(testModule, "1.1.0", 9) }, "not above"},
		{"current for another group", func(s *Spec) { s.ID, s.Group = "r-4", "other" }, "not group other"},
		{"module mid-rollout", func(s *Spec) {
			s.ID, s.Current = "r-5", &signing.Desired{Target: signing.Target{Group: "g5"}, Sequence: 9, Expires: t0,
				Modules: []signing.ModuleTarget{{Release: h.prev, Rollout: "r-x", WavePercent: 10}}}
			s.Group = "g5"
		}, "at 10%"},
		{"bad waves", func(s *Spec) { s.ID, s.Group, s.Current, s.Waves = "r-6", "g6", nil, []float64{10, 5, 100} }, "not above wave"},
		{"bad group", func(s *Spec) { s.ID, s.Group, s.Current = "r-7", "a/b", nil }, "group"},
		{"bad id", func(s *Spec) { s.ID, s.Group, s.Current = "../x", "g8", nil }, "id"},
	} {
		s := h.spec("r-1")
		if c2.name == "same id" {
			s.Current = nil
		}
		c2.mod(&s)
		if _, err := c.Start(ctx, s); err == nil || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("%s: %v, want an error with %q", c2.name, err, c2.want)
		}
	}
	// A later rollout in the group continues the sequence of the earlier ones.
	if _, err := c.Abort(ctx, "r-1", "alice", ""); err != nil {
		t.Fatal(err)
	}
	w := h.controller("ctl-a")
	h.tick(w)
	s := h.spec("r-9")
	s.Current = nil
	r9, err := c.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if r9.Sequence != 6 || r9.Previous != nil {
		t.Errorf("r-9 starts at sequence %d (want 6, after r-1's revert) with previous %v", r9.Sequence, r9.Previous)
	}
	if r9.Timeout != 30*60*1e9 || r9.Soak != 10*60*1e9 {
		t.Errorf("timeout %s soak %s", r9.Timeout, r9.Soak)
	}
	// Defaults and a generated id.
	r10, err := c.Start(ctx, Spec{Release: h.rel, Group: "g10"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r10.ID, "r-20261125-120000-") || !slices.Equal(r10.Waves, DefaultWaves) || r10.Timeout.String() != "30m0s" || r10.Last.Actor != "operator" {
		t.Errorf("defaults: %+v", r10)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 {
		t.Errorf("List: %d, %v", len(list), err)
	}
}

// TestModuleNewToGroup: without a previous release, devices outside the wave get nothing
// and an abort removes the module.
func TestModuleNewToGroup(t *testing.T) {
	h := newHarness(t, 200, func(string) behavior { return failHealth })
	for _, d := range h.devices {
		d.version, d.state, d.applied = "", "", 0
		h.report(d)
	}
	c := h.controller("ctl-a")
	s := h.spec("r-new-mod")
	s.Current = nil
	h.start(c, s)
	r := h.run(c, "r-new-mod", 100)
	if r.State != Aborted {
		t.Fatalf("state %s", r.State)
	}
	ds := h.desiredStates()
	if len(ds) != 2 || len(ds[1].Modules) != 0 {
		t.Fatalf("revert of a new module: %+v", ds[len(ds)-1])
	}
	if ds[0].Modules[0].Previous != nil {
		t.Errorf("wave target has a previous: %+v", ds[0].Modules[0])
	}
}

func TestNewNeedsStore(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	c, err := New(Options{Store: newMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() == "" {
		t.Error("no generated id")
	}
	if err := c.Tick(context.Background()); err == nil {
		t.Error("Tick without publisher, signers and reports succeeded")
	}
}

// TestRunStopsWithContext: Run ticks and returns when its context ends.
func TestRunStopsWithContext(t *testing.T) {
	h := newHarness(t, 5, nil)
	c := h.controller("ctl-a")
	c.o.MinInterval = time.Microsecond
	h.start(c, h.spec("r-run"))
	ctx, cancel := context.WithCancel(context.Background())
	published := make(chan struct{})
	h.broker.beforePublish = func() { close(published) }
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-published
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
