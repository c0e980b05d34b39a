package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
)

// hostileCases is the hostile-module suite in testdata/hostile (WAT beside the built wasm,
// each with its manifest). load is the error Load must give (nil: it loads); handle the error
// of its event (nil: the event succeeds because the sandbox gave it nothing to abuse).
var hostileCases = []struct {
	name         string
	load, handle error
}{
	{"infinite-loop", nil, ErrTimeout},
	{"exp-recursion", nil, ErrTimeout},
	{"deep-recursion", nil, ErrStackOverflow},
	{"memory-grow-bomb", nil, ErrMemoryLimit},
	{"memory-grow-loop", nil, ErrMemoryLimit},
	{"huge-initial-memory", ErrMemoryLimit, nil},
	{"start-never-returns", nil, ErrTimeout},
	{"start-recursion", nil, ErrTimeout},
	{"wasi-path-open", nil, nil},
	{"wasi-sock", nil, nil},
	{"forbidden-topic", nil, ErrForbiddenTopic},
	{"publish-flood", nil, ErrPublishLimit},
	{"kv-over-quota", nil, ErrQuota},
	{"oob-pointers", nil, ErrBadPointer},
	{"oob-length", nil, ErrBadPointer},
	{"oob-kv", nil, ErrBadPointer},
	{"unknown-import", ErrUnknownImport, nil},
	{"too-large", ErrModuleTooLarge, nil},
	{"trap", nil, ErrTrap},
}

func hostile(t testing.TB, name string) ([]byte, *modules.Manifest) {
	t.Helper()
	wasm, err := os.ReadFile(filepath.Join("testdata", "hostile", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "hostile", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := modules.Parse(raw)
	if err != nil {
		t.Fatalf("%s.yaml: %v", name, err)
	}
	return wasm, m
}

// TestHostileModulesAreContained runs every hostile module, on both of wazero's engines: each
// ends with its typed error within its deadline + 10ms, and a well-behaved module still runs
// right after it on the same runtime.
func TestHostileModulesAreContained(t *testing.T) {
	for _, interp := range []bool{false, true} {
		r := newRuntime(t, Config{Interpreter: interp, MaxModuleSize: 1 << 20})
		okWasm, okManifest := hostile(t, "well-behaved")
		healthy := load(t, r, okWasm, okManifest)
		for _, c := range hostileCases {
			t.Run(fmt.Sprintf("%s/interpreter=%v", c.name, interp), func(t *testing.T) {
				wasm, m := hostile(t, c.name)
				mod, err := r.Load(context.Background(), wasm, m)
				if c.load != nil || err != nil {
					if !errors.Is(err, c.load) {
						t.Fatalf("load: %v, want %v", err, c.load)
					}
					return
				}
				start := time.Now()
				res, err := mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte(`{"v":1}`)})
				took := time.Since(start)
				if c.handle == nil && err != nil || c.handle != nil && !errors.Is(err, c.handle) {
					t.Fatalf("handle: %v, want %v", err, c.handle)
				}
				if err == nil && len(res.Publishes) != 0 {
					t.Fatalf("published %+v", res.Publishes)
				}
				if limit := time.Duration(mod.Limits().Timeout) + 10*time.Millisecond; took > limit {
					t.Fatalf("took %v, more than deadline + 10ms (%v)", took, limit)
				}
				if s := mod.Stats(); err != nil && s.ByKind[Kind(err)] != 1 {
					t.Fatalf("stats %+v do not count the %s", s, Kind(err))
				}
				res, err = healthy.Handle(context.Background(), Event{Payload: []byte("still here")})
				if err != nil || len(res.Publishes) != 1 || string(res.Publishes[0].Payload) != "still here" {
					t.Fatalf("well-behaved module after %s: %+v, %v", c.name, res, err)
				}
			})
		}
	}
}

func TestHostileLeakStateSeesPristineInstances(t *testing.T) {
	for _, interp := range []bool{false, true} {
		r := newRuntime(t, Config{Interpreter: interp})
		wasm, m := hostile(t, "leak-state")
		mod := load(t, r, wasm, m)
		for i := 0; i < 3; i++ {
			res, err := mod.Handle(context.Background(), Event{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res.Publishes[0].Payload); got != "global=7 memory=42 table=1 pages=1" {
				t.Fatalf("interpreter=%v event %d saw %q", interp, i, got)
			}
		}
	}
}

// TestRunawayGuestsUnderGarbageCollection runs the guests that never stop on their own while
// another goroutine forces garbage collections without pause. Compiled guest code cannot be
// preempted, so a guest that never entered Go would stall every stop-the-world pause, the
// deadline timer with it, and so the whole agent. One at a time, each must still end with
// ErrTimeout within deadline + 10 ms; sixteen at once on this machine's few cores, all must
// end with ErrTimeout (late by the Go scheduler's time slices, but they end), on both engines.
func TestRunawayGuestsUnderGarbageCollection(t *testing.T) {
	for _, interp := range []bool{false, true} {
		r := newRuntime(t, Config{Interpreter: interp})
		var mods []*Module
		for _, name := range []string{"infinite-loop", "exp-recursion", "start-never-returns", "start-recursion"} {
			wasm, m := hostile(t, name)
			m.Limits.Concurrency = 4
			mods = append(mods, load(t, r, wasm, m))
		}
		stop := make(chan struct{})
		gcDone := make(chan struct{})
		go func() {
			defer close(gcDone)
			for {
				select {
				case <-stop:
					return
				default:
					runtime.GC()
				}
			}
		}()
		run := func(mod *Module, limit time.Duration) error {
			start := time.Now()
			_, err := mod.Handle(context.Background(), Event{Topic: "in"})
			took := time.Since(start)
			switch {
			case !errors.Is(err, ErrTimeout):
				return fmt.Errorf("%s: %v, want %v", mod.Manifest().Name, err, ErrTimeout)
			case took > limit:
				return fmt.Errorf("%s: took %v, more than %v", mod.Manifest().Name, took, limit)
			}
			return nil
		}
		for _, mod := range mods {
			if err := run(mod, time.Duration(mod.Limits().Timeout)+10*time.Millisecond); err != nil {
				t.Errorf("interpreter=%v, alone: %v", interp, err)
			}
		}
		errs := make(chan error, 4*len(mods))
		for _, mod := range mods {
			for i := 0; i < 4; i++ {
				go func() { errs <- run(mod, time.Second) }()
			}
		}
		for i := 0; i < cap(errs); i++ {
			if err := <-errs; err != nil {
				t.Errorf("interpreter=%v, sixteen at once: %v", interp, err)
			}
		}
		close(stop)
		<-gcDone
	}
}
