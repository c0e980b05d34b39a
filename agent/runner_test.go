package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/agent/sandbox"
)

// TestHealthVerdicts checks the health window's arithmetic: it decides after its events, or
// early once the failures alone cross the ratio, or at its deadline with what it saw.
func TestHealthVerdicts(t *testing.T) {
	trap := fmt.Errorf("%w: unreachable", sandbox.ErrTrap)
	timeout := fmt.Errorf("%w: still running", sandbox.ErrTimeout)
	for _, c := range []struct {
		name    string
		events  []error
		expire  bool
		decided bool
		healthy bool
		kind    string
	}{
		{"all good", []error{nil, nil, nil, nil, nil}, false, true, true, ""},
		{"undecided before its events", []error{nil, nil}, false, false, false, ""},
		{"early: failures alone cross the ratio", []error{trap, trap, trap}, false, true, false, "trap"},
		{"two of five is within 50%", []error{trap, nil, trap, nil, nil}, false, true, true, ""},
		{"commonest kind named", []error{timeout, trap, timeout, nil, timeout}, false, true, false, "timeout"},
		{"deadline with no events is healthy", nil, true, true, true, ""},
		{"deadline with mostly failures", []error{trap, nil, trap}, true, true, false, "trap"},
		{"deadline with one failure of two is not above 50%", []error{trap, nil}, true, true, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHealth(5, time.Hour, 0.5)
			for _, err := range c.events {
				h.record(err)
			}
			if c.expire {
				h.expire()
			}
			select {
			case v := <-h.verdict:
				if !c.decided {
					t.Fatalf("decided %+v too early", v)
				}
				if v.healthy != c.healthy || v.kind != c.kind {
					t.Fatalf("verdict %+v, want healthy=%v kind=%q", v, c.healthy, c.kind)
				}
				if !v.healthy && !strings.Contains(v.reason, "events failed") {
					t.Fatalf("reason %q", v.reason)
				}
			default:
				if c.decided {
					t.Fatal("no verdict")
				}
			}
			// A window decides once; later events and the deadline change nothing.
			h.record(errors.New("late"))
			h.expire()
			select {
			case v := <-h.verdict:
				if c.decided {
					t.Fatalf("second verdict %+v", v)
				}
			default:
				if !c.decided {
					t.Fatal("expire after an undecided window gave no verdict")
				}
			}
		})
	}
}

func TestLatencyPercentiles(t *testing.T) {
	var l latencies
	if p50, p99 := l.percentiles(); p50 != 0 || p99 != 0 {
		t.Fatal(p50, p99)
	}
	for i := 1; i <= 1000; i++ {
		l.add(time.Duration(i) * time.Microsecond)
	}
	// Only the last 512 are kept: 489..1000 µs.
	p50, p99 := l.percentiles()
	if p50 != 744*time.Microsecond || p99 != 994*time.Microsecond {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
	if jitter(0) != 0 || jitter(1) != 1 {
		t.Fatal("tiny durations")
	}
}

// TestQueueOverflowDrops offers more events than a module's queue holds while its one
// worker is busy: the extra ones are dropped and counted, never queued without bound, and
// every event's done runs exactly once, so MQTT messages are always acknowledged.
func TestQueueOverflowDrops(t *testing.T) {
	wasm := watModule(t, `(module
  (memory (export "memory") 1)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20000000))))
    (i32.const 0)))`)
	rt := newTestRuntime(t)
	m := testManifest(t, "name: slow\nversion: 1.0.0\nabi: handler/v1\ntriggers: [{mqtt: in}]\nlimits: {timeout: 5s, concurrency: 1}\n")
	mod, err := rt.Load(t.Context(), wasm, m)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes atomicCounter
	r := startRunning(testRef("slow"), mod, "pi-1", 2, testLog(t), func(sandbox.Message) {}, func(*running, error) { outcomes.add() })
	var done atomicCounter
	for range 10 {
		r.offer(job{ev: sandbox.Event{Topic: "in"}, done: done.add})
	}
	dropped := r.dropped.Load()
	if dropped < 7 || dropped > 8 {
		t.Fatalf("dropped %d of 10 with one worker and a queue of 2", dropped)
	}
	r.stop() // waits for the accepted ones
	if done.get() != 10 {
		t.Fatalf("done called %d times for 10 events", done.get())
	}
	if got := outcomes.get(); uint64(got)+dropped != 10 {
		t.Fatalf("%d handled + %d dropped != 10", got, dropped)
	}
	if !r.matches("in") || r.matches("other") {
		t.Fatal("trigger matching")
	}
}
