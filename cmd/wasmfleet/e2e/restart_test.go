package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// crashStore is the bucket as a controller that is about to die sees it: when crash says
// so for a write, the controller's context is cancelled, before the write reaches the bucket
// (before=true) or right after it did. Everything the controller does next fails, as it
// would in a killed process.
type crashStore struct {
	rollout.Store
	crash func(key string, data []byte) (now, before bool)
	kill  context.CancelFunc

	mu      sync.Mutex
	crashed bool
	written []byte // the document of the crashing write
}

func (s *crashStore) Put(ctx context.Context, key string, data []byte, ifVersion string) (string, error) {
	s.mu.Lock()
	now, before := false, false
	if !s.crashed {
		now, before = s.crash(key, data)
		s.crashed = now
		if now {
			s.written = bytes.Clone(data)
		}
	}
	s.mu.Unlock()
	if now && before {
		s.kill()
		return "", errors.New("killed before the write")
	}
	v, err := s.Store.Put(ctx, key, data, ifVersion)
	if now {
		s.kill()
	}
	return v, err
}

// runControllerCtx runs a controller until ctx ends; the cleanup waits for it.
func (w *world) runControllerCtx(ctx context.Context, cfg controller.Config) (*controller.Server, <-chan error) {
	w.t.Helper()
	srv, err := controller.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return srv, done
}

// TestControllerRestart kills the controller in the middle of a rollout, at three points
// of the transition that opens wave 2, and starts another controller (another id, so it
// first waits out the lease of the dead one). Each time the rollout continues where it was:
// every wave's desired state is published exactly once with its own sequence, in order
// (a controller that died after its write has its signed bytes published by the next one,
// unchanged), no agent refuses anything, every agent ends on the release, and the audit
// records are steps 1 to 7, each once.
func TestControllerRestart(t *testing.T) {
	w := newWorld(t, nil)
	devices := w.startAgents("pi", 6, group)
	prev := w.publishRelease(thresholdAlert(t, "1.0.0"))
	{
		ctx, cancel := context.WithCancel(context.Background())
		srv, done := w.runControllerCtx(ctx, w.controllerConfig("ctl-seed"))
		waitFor(t, 15*time.Second, srv.Synced, func() string { return "the seed controller to sync" })
		w.seed(srv.Controller(), "seed", group, prev, devices)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	waves := []float64{34, 67, 100}
	isDoc := func(id string) func(string) bool {
		key, _ := objects.RolloutKey(id)
		return func(k string) bool { return k == key }
	}
	opening := func(data []byte) *rollout.Rollout {
		r, err := rollout.Parse(data)
		if err != nil || r.Wave != 1 || r.State != rollout.Running {
			return nil
		}
		return r
	}
	for i, tc := range []struct {
		name string
		// crash picks the write the controller dies at.
		crash func(r *rollout.Rollout) (now, before bool)
		// signed: the wave 2 published is the one signed before the crash; twice: the dead
		// controller published it too.
		signed, twice bool
	}{
		{"BeforeTheTransitionIsWritten", func(r *rollout.Rollout) (bool, bool) { return !r.Published, true }, false, false},
		{"AfterTheTransitionIsWrittenBeforeItIsPublished", func(r *rollout.Rollout) (bool, bool) { return !r.Published, false }, true, false},
		{"AfterItIsPublishedBeforeThatIsRecorded", func(r *rollout.Rollout) (bool, bool) { return r.Published, true }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version := fmt.Sprintf("1.%d.0", i+1)
			rel := w.publishRelease(thresholdAlert(t, version))
			id := pickID(t, fmt.Sprintf("restart%d", i), devices, waves, []int{2, 4, 6})

			ctxA, killA := context.WithCancel(context.Background())
			defer killA()
			cs := &crashStore{Store: w.store, kill: killA}
			cs.crash = func(key string, data []byte) (bool, bool) {
				if !isDoc(id)(key) {
					return false, false
				}
				if r := opening(data); r != nil {
					return tc.crash(r)
				}
				return false, false
			}
			cfgA := w.controllerConfig(fmt.Sprintf("ctl-a%d", i))
			cfgA.Store, cfgA.Lease = cs, 3*time.Second
			srvA, doneA := w.runControllerCtx(ctxA, cfgA)
			waitFor(t, 15*time.Second, srvA.Synced, func() string { return "controller A to sync" })
			cur, _, err := controller.LatestDesired(context.Background(), w.store, group, &signing.Verifier{Trust: w.trust})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := srvA.Controller().Start(context.Background(), rollout.Spec{ID: id, Release: rel, Group: group, Current: cur,
				Waves: waves, MinDevices: 1, Timeout: time.Minute, Actor: "e2e"}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-doneA:
				if err != nil {
					t.Fatalf("controller A: %v", err)
				}
			case <-time.After(45 * time.Second):
				t.Fatalf("controller A never reached the crash point; rollout: %+v", w.doc(id))
			}
			dead := w.doc(id)
			t.Logf("controller A died: rollout %s %s, wave %d, step %d, published %v", id, dead.State, dead.Wave+1, dead.Last.Step, dead.Published)

			cfgB := w.controllerConfig(fmt.Sprintf("ctl-b%d", i))
			cfgB.Lease = 3 * time.Second
			_, stopB := w.runController(cfgB)
			r := w.waitState(id, rollout.Completed, 45*time.Second)
			// The audit record of a transition is written after the document that makes it
			// (drive): wait for the last one before stopping B, or the stop may beat it.
			waitFor(t, 10*time.Second, func() bool { return len(w.auditSteps(id)) >= 7 },
				func() string { return fmt.Sprintf("audit records of %s: %v", id, w.auditSteps(id)) })
			stopB()
			w.waitAllRun(devices, "threshold-alert", version, 10*time.Second)

			// Each wave once, in order, each with its own sequence.
			var percents []float64
			var seqs []uint64
			var wave2 [][]byte
			for _, p := range w.desiredHistory(group) {
				m, ok := target(&p.d, "threshold-alert")
				if !ok || m.Rollout != id {
					continue
				}
				if m.WavePercent == 67 {
					wave2 = append(wave2, p.raw)
				}
				if len(seqs) > 0 && seqs[len(seqs)-1] == p.d.Sequence {
					continue
				}
				percents, seqs = append(percents, m.WavePercent), append(seqs, p.d.Sequence)
			}
			if !slices.Equal(percents, waves) || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != 3 {
				t.Fatalf("desired states of %s: percents %v, sequences %v; want each of %v once", id, percents, seqs, waves)
			}
			if want := map[bool]int{false: 1, true: 2}[tc.twice]; len(wave2) != want {
				t.Fatalf("wave 2 was published %d times; want %d", len(wave2), want)
			}
			for _, b := range wave2[1:] {
				if !bytes.Equal(b, wave2[0]) {
					t.Fatal("wave 2 was published twice with different bytes")
				}
			}
			// What was signed before the crash is what was published.
			if tc.signed {
				written, err := rollout.Parse(cs.written)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(written.Desired, wave2[0]) {
					t.Fatal("the controller that took over published another wave 2 than the one written before the crash")
				}
			}
			if steps := w.auditSteps(id); !slices.Equal(steps, []uint64{1, 2, 3, 4, 5, 6, 7}) || r.Last.Step != 7 {
				t.Fatalf("audit records of %s: steps %v, last step %d; want 1 to 7, once each", id, steps, r.Last.Step)
			}
			for _, d := range devices {
				for _, e := range w.events(d) {
					if e.Kind == report.EventRefused || e.Kind == report.EventFailed {
						t.Errorf("%s: %+v", d, e)
					}
				}
			}
		})
		if t.Failed() {
			return
		}
	}
}
