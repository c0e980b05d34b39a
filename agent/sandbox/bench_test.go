package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox/internal/peers"
	"github.com/wasmfleet/wasmfleet/modules"
)

// The benchmarks of issue 8 (docs/BENCHMARKS.md, "Sandbox"; `make bench` runs them and writes
// the table). Every sandbox figure has its peers in the same run:
//
//   - peer-wazero-naive: plain wazero v1.12 as its documentation shows it, the same module
//     unmodified, a fresh instance from the default wazero.NewModuleConfig() per event, host
//     functions that do the same work as the sandbox's (config, device id, publish) without
//     its checks;
//   - peer-wazero-warm: one plain wazero instance called again and again, nothing restored
//     (not pristine): the floor, for what limits cost on compute;
//   - peer-native-forkexec: the handler's C source built natively (-O2) and fork/exec'ed per
//     event, the process-per-event model;
//   - peer-node-instance: Node.js, a new WebAssembly.Instance per event of a module compiled
//     once.
//
// Besides ns/op (the mean), B/op and allocs/op, each reports p50-ns and p99-ns over its last
// 65,536 events, cpu-ns/op (the process's CPU time per event, garbage collection included:
// what other processes on a shared machine disturb least) and, for the sandbox,
// events/s/core: events per second of that CPU time.
//
// `make test` runs each once (-benchtime 1x -short) to check that they work.

// thresholdAlert is the C example handler with its manifest; the event's reading is above
// the threshold, so every event publishes one alert.
var (
	taPayload = []byte(`{"sensor":"t1","value":31.2,"unit":"C","ts":"2026-11-26T00:00:00Z"}`)
	taTopic   = "sensors/t1/temperature"
	taConfig  = map[string]string{"threshold": "30.5"}
)

func example(b *testing.B, name string) ([]byte, *modules.Manifest, string) {
	b.Helper()
	dir := filepath.Join("..", "..", "modules", "examples", name)
	wasm, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
	if err != nil {
		b.Fatalf("%v (the Go examples are built by make go-modules)", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	m := manifest(b, string(raw))
	// The examples' timeouts (50 ms) hold on a device, but a benchmark on a machine shared
	// with compiles can see one event stalled that long, and one failed event ends the run.
	// What a deadline costs does not depend on its value.
	m.Limits.Timeout = modules.Duration(10 * time.Second)
	return wasm, m, dir
}

// measure runs event in b.Loop, recording each event's time, and reports p50-ns, p99-ns
// and, when perCore, events/s/core.
func measure(b *testing.B, perCore bool, event func()) {
	b.Helper()
	lat := peers.NewLatencies(1 << 16)
	b.ReportAllocs()
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		t0 := time.Now()
		event()
		lat.Add(time.Since(t0))
		n++
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(lat.Percentile(0.5)), "p50-ns")
	b.ReportMetric(float64(lat.Percentile(0.99)), "p99-ns")
	if n > 0 {
		b.ReportMetric(float64(cpu)/float64(n), "cpu-ns/op")
	}
	if perCore && cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "events/s/core")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sandboxEvent(b *testing.B, mod *Module, ev Event, publishes int) func() {
	ctx := context.Background()
	return func() {
		res, err := mod.Handle(ctx, ev)
		if err != nil || len(res.Publishes) != publishes {
			b.Fatalf("sandbox event: %+v, %v", res, err)
		}
	}
}

// BenchmarkThresholdAlert is one event of the C example threshold-alert (a 70-byte JSON
// reading above the threshold in, one alert out) against all four peers.
func BenchmarkThresholdAlert(b *testing.B) {
	wasm, m, dir := example(b, "threshold-alert")
	ev := Event{Topic: taTopic, Payload: taPayload}
	for _, interp := range []bool{false, true} {
		engine := engineName(interp)
		b.Run("sandbox-"+engine, func(b *testing.B) {
			mod := load(b, newRuntime(b, Config{Interpreter: interp, DeviceID: "bench-1"}), wasm, m)
			measure(b, true, sandboxEvent(b, mod, ev, 1))
		})
		if !interp {
			b.Run("sandbox-compiler-unrecorded", func(b *testing.B) {
				r := newRuntime(b, Config{DeviceID: "bench-1"})
				r.recordWrites = false
				measure(b, true, sandboxEvent(b, load(b, r, wasm, m), ev, 1))
			})
		}
		b.Run("peer-wazero-naive-"+engine, func(b *testing.B) {
			p := newPlainWazero(b, interp, wasm, "bench-1", taTopic, taConfig)
			measure(b, false, func() { p.freshEvent(b, taPayload, 1) })
		})
	}
	b.Run("sandbox-compiler-parallel", func(b *testing.B) {
		mm := *m
		mm.Limits.Concurrency = runtime.GOMAXPROCS(0)
		mod := load(b, newRuntime(b, Config{DeviceID: "bench-1"}), wasm, &mm)
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			event := sandboxEvent(b, mod, ev, 1)
			for pb.Next() {
				event()
			}
		})
		if cpu := cpuTime() - cpu0; cpu > 0 {
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/s/core")
		}
	})
	b.Run("peer-native-forkexec", func(b *testing.B) {
		cc := tool(b, "clang")
		n, err := peers.BuildNative(context.Background(), cc, filepath.Join(dir, "threshold-alert.c"), b.TempDir(), "bench-1", taConfig)
		if err != nil {
			b.Fatal(err)
		}
		measure(b, false, func() {
			out, err := n.Run(context.Background(), taTopic, taPayload)
			if err != nil || len(out) == 0 {
				b.Fatalf("native: %q, %v", out, err)
			}
		})
	})
	b.Run("peer-node-instance", func(b *testing.B) {
		events := 5000
		if testing.Short() {
			events = 20
		}
		res, err := peers.Node(context.Background(), b.TempDir(), filepath.Join(dir, "threshold-alert.wasm"), "bench-1", taTopic, taConfig, taPayload, events, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.MeanNS, "ns/op")
		b.ReportMetric(res.P50NS, "p50-ns")
		b.ReportMetric(res.P99NS, "p99-ns")
		b.Logf("node %s, %d events, RSS %d MiB", res.Version, res.Events, res.RSS>>20)
	})
}

// BenchmarkMovingAverage is one event of the Go example moving-average (Go's wasip1 runtime,
// kv read and written every event). Its kv store is on /dev/shm where there is one: a kv
// commit writes and syncs a file, which is agent/kv's cost, not the sandbox's.
func BenchmarkMovingAverage(b *testing.B) {
	wasm, m, _ := example(b, "moving-average")
	payload := []byte(`{"value": 21.5}`)
	ev := Event{Topic: "sensors/t1/temperature", Payload: payload}
	for _, interp := range []bool{false, true} {
		engine := engineName(interp)
		b.Run("sandbox-"+engine, func(b *testing.B) {
			store, err := kv.Open(shmDir(b), zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			mod := load(b, newRuntime(b, Config{Interpreter: interp, DeviceID: "bench-1", KV: store}), wasm, m)
			measure(b, true, sandboxEvent(b, mod, ev, 1))
		})
	}
	b.Run("peer-wazero-naive-compiler", func(b *testing.B) {
		p := newPlainWazero(b, false, wasm, "bench-1", ev.Topic, map[string]string{"window": "5"})
		measure(b, false, func() { p.freshEvent(b, payload, 1) })
	})
}

// BenchmarkHash4MiB is a compute-heavy event (testdata/bench/hash.c: fill 4 MiB from the
// payload, hash it) with every limit in force, against plain wazero calling the same module,
// uninstrumented, in one instance it never restores: what limits cost on compute.
func BenchmarkHash4MiB(b *testing.B) {
	wasm := clangWasm(b, filepath.Join("testdata", "bench", "hash.c"))
	m := manifest(b, "name: hash\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {publish: [hash/out]}\nlimits: {memory: 8MiB, timeout: 10s}\n")
	for _, algo := range []string{"sha256", "fnv"} {
		payload := []byte(algo + " 4 MiB of this")
		b.Run(algo+"/sandbox-compiler", func(b *testing.B) {
			mod := load(b, newRuntime(b, Config{}), wasm, m)
			measure(b, true, sandboxEvent(b, mod, Event{Payload: payload}, 1))
		})
		b.Run(algo+"/peer-wazero-warm-compiler", func(b *testing.B) {
			p := newPlainWazero(b, false, wasm, "bench-1", "", nil)
			inst := p.instantiate(b)
			measure(b, false, func() { p.call(b, inst, payload, 1) })
		})
	}
}

// storesWAT is a handler that writes 32 KiB of its one page of memory byte by byte: the worst
// case for recording the chunks an event writes, which adds instructions to every store.
const storesWAT = `(module
  (memory (export "memory") 1)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (local $i i32)
    (loop $l
      (i32.store8 (i32.add (i32.const 4096) (local.get $i)) (local.get $i))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 32768))))
    (i32.const 0)))`

// BenchmarkStores is one event of storesWAT: with writes recorded (the compiler's default),
// without (every restore compares all of memory), and plain wazero calling the module,
// uninstrumented, in one instance it never restores.
func BenchmarkStores(b *testing.B) {
	wasm := wat(b, storesWAT)
	m := manifest(b, "name: stores\nversion: 1.0.0\nabi: handler/v1\nlimits: {timeout: 10s}\n")
	ev := Event{Payload: []byte("x")}
	for _, record := range []bool{true, false} {
		name := "sandbox-compiler"
		if !record {
			name += "-unrecorded"
		}
		b.Run(name, func(b *testing.B) {
			r := newRuntime(b, Config{})
			r.recordWrites = record
			measure(b, true, sandboxEvent(b, load(b, r, wasm, m), ev, 0))
		})
	}
	b.Run("peer-wazero-warm-compiler", func(b *testing.B) {
		p := newPlainWazero(b, false, wasm, "bench-1", "", nil)
		inst := p.instantiate(b)
		measure(b, false, func() { p.call(b, inst, ev.Payload, 0) })
	})
}

// BenchmarkEvent runs one tiny event (the echo example: a 64-byte payload in, one publish
// out).
func BenchmarkEvent(b *testing.B) {
	wasm, m, _ := example(b, "echo")
	payload := []byte(`{"sensor":"t1","celsius":21.5,"ts":"2026-11-26T00:00:00Z","seq":1}`)
	for _, interp := range []bool{false, true} {
		engine := engineName(interp)
		b.Run("sandbox-"+engine, func(b *testing.B) {
			mod := load(b, newRuntime(b, Config{Interpreter: interp, DeviceID: "bench-1"}), wasm, m)
			measure(b, true, sandboxEvent(b, mod, Event{Topic: "echo-in/bench-1", Payload: payload}, 1))
		})
		b.Run("peer-wazero-naive-"+engine, func(b *testing.B) {
			p := newPlainWazero(b, interp, wasm, "bench-1", "echo-in/bench-1", nil)
			measure(b, false, func() { p.freshEvent(b, payload, 1) })
		})
	}
}

// loopWAT is a handler that counts to the payload's length times 1024 in a tight loop: the
// worst case for per-iteration instrumentation.
const loopWAT = `(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $end i32)
    (local.set $end (i32.mul (local.get $n) (i32.const 1024)))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $end))))
    (i32.const 0)))`

// BenchmarkTightLoop runs 1,048,576 iterations of an empty loop in one event: the cost of a
// check at every loop head. Its peers are plain wazero without any way to stop the loop, and
// plain wazero with WithCloseOnContextDone (which stops loops, but not loop-free code).
func BenchmarkTightLoop(b *testing.B) {
	ctx := context.Background()
	wasm := wat(b, loopWAT)
	payload := make([]byte, 1024)
	m := manifest(b, "name: loop\nversion: 1.0.0\nabi: handler/v1\nlimits: {timeout: 10s}\n")
	b.Run("sandbox-compiler", func(b *testing.B) {
		mod := load(b, newRuntime(b, Config{}), wasm, m)
		measure(b, false, sandboxEvent(b, mod, Event{Payload: payload}, 0))
	})
	for _, closeOnDone := range []bool{false, true} {
		name := "peer-wazero-naive-compiler"
		if closeOnDone {
			name = "peer-wazero-CloseOnContextDone-compiler"
		}
		b.Run(name, func(b *testing.B) {
			rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(closeOnDone)
			rt := wazero.NewRuntimeWithConfig(ctx, rc)
			b.Cleanup(func() { rt.Close(ctx) })
			(&plainWazero{rt: rt}).hostFunctions(b)
			compiled, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			measure(b, false, func() {
				inst, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := inst.ExportedFunction("wasmfleet_handle").Call(ctx, 1024, 1024); err != nil {
					b.Fatal(err)
				}
				inst.Close(ctx)
			})
		})
	}
}

func engineName(interp bool) string {
	if interp {
		return "interpreter"
	}
	return "compiler"
}

// plainWazero is the peer: a module compiled once in plain wazero, with host functions of the
// ABI that do the work a handler needs (config, device id, topic, publish) and nothing more.
type plainWazero struct {
	rt        wazero.Runtime
	compiled  wazero.CompiledModule
	device    string
	topic     string
	config    map[string]string
	published int
}

func newPlainWazero(b *testing.B, interp bool, wasm []byte, device, topic string, config map[string]string) *plainWazero {
	ctx := context.Background()
	rc := wazero.NewRuntimeConfig()
	if interp {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	p := &plainWazero{rt: wazero.NewRuntimeWithConfig(ctx, rc), device: device, topic: topic, config: config}
	b.Cleanup(func() { p.rt.Close(ctx) })
	p.hostFunctions(b)
	var err error
	if p.compiled, err = p.rt.CompileModule(ctx, wasm); err != nil {
		b.Fatal(err)
	}
	return p
}

func (p *plainWazero) hostFunctions(b *testing.B) {
	ctx := context.Background()
	wasi_snapshot_preview1.MustInstantiate(ctx, p.rt)
	copyOut := func(mod api.Module, v string, buf, capacity uint64) uint64 {
		if dst, ok := mod.Memory().Read(uint32(buf), uint32(capacity)); ok {
			copy(dst, v)
		}
		return uint64(len(v))
	}
	read := func(mod api.Module, ptr, n uint64) []byte {
		v, _ := mod.Memory().Read(uint32(ptr), uint32(n))
		return v
	}
	impl := map[string]func(mod api.Module, s []uint64){
		"event_topic": func(mod api.Module, s []uint64) { s[0] = copyOut(mod, p.topic, s[0], s[1]) },
		"device_id":   func(mod api.Module, s []uint64) { s[0] = copyOut(mod, p.device, s[0], s[1]) },
		"config_get": func(mod api.Module, s []uint64) {
			v, ok := p.config[string(read(mod, s[0], s[1]))]
			if !ok {
				s[0] = notFound
				return
			}
			s[0] = copyOut(mod, v, s[2], s[3])
		},
		"publish": func(mod api.Module, s []uint64) {
			_ = string(read(mod, s[0], s[1]))
			_ = append([]byte(nil), read(mod, s[2], s[3])...)
			p.published++
			s[0] = 0
		},
		"kv_get": func(mod api.Module, s []uint64) { s[0] = notFound },
	}
	hb := p.rt.NewHostModuleBuilder(HostModule)
	for _, h := range hostFuncs() {
		fn, results := impl[h.name], len(h.results)
		hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, mod api.Module, s []uint64) {
			switch {
			case fn != nil:
				fn(mod, s)
			case results > 0:
				s[0] = 0
			}
		}), h.params, h.results).Export(h.name)
	}
	if _, err := hb.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
}

// instantiate makes an instance the naive way: the default module config, then the
// reactor's _initialize.
func (p *plainWazero) instantiate(b *testing.B) api.Module {
	ctx := context.Background()
	inst, err := p.rt.InstantiateModule(ctx, p.compiled, wazero.NewModuleConfig())
	if err != nil {
		b.Fatal(err)
	}
	if init := inst.ExportedFunction("_initialize"); init != nil {
		if _, err := init.Call(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return inst
}

// call runs one event in inst.
func (p *plainWazero) call(b *testing.B, inst api.Module, payload []byte, publishes int) {
	ctx := context.Background()
	p.published = 0
	res, err := inst.ExportedFunction("wasmfleet_alloc").Call(ctx, uint64(len(payload)))
	if err != nil {
		b.Fatal(err)
	}
	inst.Memory().Write(uint32(res[0]), payload)
	res, err = inst.ExportedFunction("wasmfleet_handle").Call(ctx, res[0], uint64(len(payload)))
	if err != nil || res[0] != 0 || p.published != publishes {
		b.Fatalf("peer event: %v, %v, %d publishes", res, err, p.published)
	}
}

// freshEvent runs one event in a new instance, closed afterwards.
func (p *plainWazero) freshEvent(b *testing.B, payload []byte, publishes int) {
	inst := p.instantiate(b)
	p.call(b, inst, payload, publishes)
	inst.Close(context.Background())
}

// tool returns the path of a program the benchmarks need; they fail without it (make deps).
func tool(b *testing.B, name string) string {
	b.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found: run make deps", name)
	}
	return p
}

// clangWasm builds a C handler with the flags modules/build.sh uses for threshold-alert.
func clangWasm(b *testing.B, src string) []byte {
	b.Helper()
	out := filepath.Join(b.TempDir(), "m.wasm")
	cmd := exec.Command(tool(b, "clang"), "--target=wasm32-wasi", "-O2", "-fno-unroll-loops", "-Wall", "-Wextra", "-Werror",
		"-mexec-model=reactor", "-nostdlib", "-I", filepath.Join("..", "..", "modules", "sdk", "c"),
		"-Wl,--no-entry,--strip-all,--export=_initialize,-z,stack-size=8192", "-o", out, src, "/usr/lib/wasm32-wasi/crt1-reactor.o")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("clang %s: %v\n%s", src, err, msg)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return wasm
}

// shmDir is a temporary directory on /dev/shm (memory) if there is one.
func shmDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "wasmfleet-bench-*")
	if err != nil {
		return b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
