package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

// leakObservations are what testdata/hostile/leak-everything.wat must see in a pristine
// instance, by index (see the comment at its top). -1: not known in advance (the memory
// sum, the fake clocks and the random stream), but the same in every event.
var leakObservations = []struct {
	name string
	want int64
}{
	{"sum of memory", -1}, {"mem[2048]", 42}, {"memory.size", 1}, {"$g", 7},
	{"$h low", 2}, {"$h high", 1}, {"$f bits", int64(math.Float32bits(1.5))},
	{"$d bits low", int64(uint32(math.Float64bits(2.25)))}, {"$d bits high", int64(math.Float64bits(2.25) >> 32)},
	{"exported $x", 11}, {"ref.is_null($fr)", 0}, {"table slot 0", 1}, {"table.size", 2},
	{"passive data segment", int64(binary.LittleEndian.Uint32([]byte("seg!")))},
	{"$started", 1}, {"start's memory counter", 1}, {"$inited", 1}, {"_initialize's memory counter", 1},
	{"fd_fdstat_get(1)", 0}, {"fd_fdstat_get(2)", 0},
	{"realtime low", -1}, {"realtime high", -1}, {"monotonic low", -1}, {"monotonic high", -1},
	{"random low", -1}, {"random high", -1}, {"random_get errno", 0},
}

// leakEvent is one event of the leak-everything module: the letters of what it changes
// after observing, and the error kind it must end with (nil: success).
type leakEvent struct {
	modes string
	err   error
}

// leakRounds exercises every way of leaking state, each followed by an event that succeeds
// and would see it: first those a restore undoes (the instance is kept), then those it
// cannot (the instance is discarded), then failures.
var leakRounds = []leakEvent{
	{"", nil}, {"m", nil}, {"g", nil}, {"r", nil}, {"mgr", nil},
	{"p", nil}, {"t", nil}, {"T", nil}, {"d", nil}, {"E", nil}, {"P", nil}, {"f", nil},
	{"", nil}, {"mgre", ErrHandler}, {"", nil}, {"mgrk", ErrCapability}, {"", nil},
	{"mgrptTdEfu", ErrTrap}, {"mgrptTdEf", nil}, {"", nil},
}

// TestNoStateLeaksBetweenEvents runs leak-everything through every way it has of carrying
// state to the next event, on both engines, and checks each event sees exactly the state
// right after initialisation: memory (all of it), memory size, globals of every type
// whether exported or not, tables, data and element segments, the start function's and
// _initialize's effects (once), WASI's file descriptors, clocks and randomness; kv is denied.
// It also checks that the events a restore can undo really reused the instance, so that
// the restore path, not only instantiation, is what is being tested; and it does all that
// again with two events at a time on a module with concurrency 2.
func TestNoStateLeaksBetweenEvents(t *testing.T) {
	for _, interp := range []bool{false, true} {
		t.Run(fmt.Sprintf("interpreter=%v", interp), func(t *testing.T) {
			r := newRuntime(t, Config{Interpreter: interp})
			wasm, m := hostile(t, "leak-everything")
			mod := load(t, r, wasm, m)
			var first []byte
			check := func(i int, ev leakEvent, res *Result, err error) error {
				switch {
				case ev.err != nil && !errors.Is(err, ev.err):
					return fmt.Errorf("event %d (%q): %v, want %v", i, ev.modes, err, ev.err)
				case ev.err != nil:
					return nil
				case err != nil:
					return fmt.Errorf("event %d (%q): %v", i, ev.modes, err)
				case len(res.Publishes) != 1 || len(res.Publishes[0].Payload) != 4*len(leakObservations):
					return fmt.Errorf("event %d (%q) published %+v", i, ev.modes, res.Publishes)
				}
				got := res.Publishes[0].Payload
				if first == nil {
					first = got
					for j, o := range leakObservations {
						if v := int64(binary.LittleEndian.Uint32(got[4*j:])); o.want >= 0 && v != o.want {
							return fmt.Errorf("first event: %s is %d, want %d", o.name, v, o.want)
						}
					}
					return nil
				}
				var diffs []string
				for j, o := range leakObservations {
					a, b := binary.LittleEndian.Uint32(first[4*j:]), binary.LittleEndian.Uint32(got[4*j:])
					if a != b {
						diffs = append(diffs, fmt.Sprintf("%s %d (first event: %d)", o.name, b, a))
					}
				}
				if diffs != nil {
					return fmt.Errorf("event %d (%q) sees state from an earlier event: %s", i, ev.modes, strings.Join(diffs, "; "))
				}
				return nil
			}
			for i, ev := range leakRounds {
				before := mod.Stats().Instances
				res, err := mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte(ev.modes)})
				if err := check(i, ev, res, err); err != nil {
					t.Fatal(err)
				}
				// After an event that changed only what a restore undoes, the next event
				// reuses the instance (the second event restores the first's instance, since
				// the module's memory is small enough to be snapshotted at once).
				prev := ""
				if i > 0 {
					prev = leakRounds[i-1].modes
				}
				if i > 0 && strings.Trim(prev, "mgr") == "" && mod.Stats().Instances != before {
					t.Fatalf("event %d: made a new instance after %q, which a restore undoes", i, prev)
				}
			}
			// New instances: the first event's, and one after each of p t T d E P f, the
			// capability-denied kv_set, the trap and the last changes of tables and segments
			// (the instance of the handler failure "mgre" is kept: it returned, and a
			// restore undoes mgr).
			if s := mod.Stats(); s.Instances != 11 {
				t.Fatalf("%d instances for %d events, want 11", s.Instances, len(leakRounds))
			}

			// Two at a time, in random-ish orders, for the race detector and the pool.
			var wg sync.WaitGroup
			errs := make(chan error, 2*len(leakRounds))
			for g := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range 3 * len(leakRounds) {
						ev := leakRounds[(k*7+g*5)%len(leakRounds)]
						res, err := mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte(ev.modes)})
						if err := check(k, ev, res, err); err != nil {
							errs <- fmt.Errorf("goroutine %d: %w", g, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// leakMemoryWrites are the letters of testdata/hostile/leak-memory.wat: one way each of
// writing memory (see the comment at its top).
const leakMemoryWrites = "abcdefghijklmnopqrstuvwx"

// TestNoMemoryLeaksBetweenEvents runs leak-memory through every way it has of writing
// memory, one event each and then all at once, and checks that each event sees the memory
// right after initialisation, on both engines, the host's writes (the payload) included. The instance is kept throughout: each event's
// memory is restored, not made anew. On the compiler the module records the chunks it writes
// (its memory is small enough), and the restore puts back only those; the test fails if any
// way of writing is not recorded.
func TestNoMemoryLeaksBetweenEvents(t *testing.T) {
	for _, interp := range []bool{false, true} {
		t.Run(fmt.Sprintf("interpreter=%v", interp), func(t *testing.T) {
			r := newRuntime(t, Config{Interpreter: interp})
			wasm, m := hostile(t, "leak-memory")
			mod := load(t, r, wasm, m)
			if mod.written == interp {
				t.Fatalf("the module records its writes: %v, want %v", mod.written, !interp)
			}
			var first string
			events := []string{""}
			for _, c := range leakMemoryWrites {
				events = append(events, string(c), "")
			}
			events = append(events, leakMemoryWrites, "")
			for i, payload := range events {
				res, err := mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte(payload)})
				if err != nil || len(res.Publishes) != 1 {
					t.Fatalf("event %d (%q): %+v, %v", i, payload, res, err)
				}
				// The first checksum (memory below the payload), and the second (after the
				// payload: all of it in an event without one).
				got := fmt.Sprintf("%x", res.Publishes[0].Payload)
				if i == 0 {
					first = got
				} else if payload != "" && got[:8] != first[:8] || payload == "" && got != first {
					t.Fatalf("event %d sees memory written by the event before (%q): checksums %s, want %s", i, events[i-1], got, first)
				}
			}
			if s := mod.Stats(); s.Instances != 1 {
				t.Fatalf("%d instances for %d events, want 1 (every event restored)", s.Instances, len(events))
			}
		})
	}
}
