package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The peers of these benchmarks are plain wazero, run the way its documentation shows:
// the same module, unmodified, in a fresh instance from wazero.NewModuleConfig() per event,
// with do-nothing host functions. The sandbox adds instrumentation, a per-instance memory
// allocator, limits and the publish checks; the peers show what that costs.

// BenchmarkEvent runs one tiny event (the echo example: a 64-byte payload in, one publish
// out) in a pristine instance.
func BenchmarkEvent(b *testing.B) {
	ctx := context.Background()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "modules", "examples", "echo", "echo.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"sensor":"t1","celsius":21.5,"ts":"2026-11-26T00:00:00Z","seq":1}`)
	for _, interp := range []bool{false, true} {
		engine := "compiler"
		if interp {
			engine = "interpreter"
		}
		b.Run("sandbox/"+engine, func(b *testing.B) {
			r := newRuntime(b, Config{Interpreter: interp, DeviceID: "bench-1"})
			raw, err := os.ReadFile(filepath.Join("..", "..", "modules", "examples", "echo", "manifest.yaml"))
			if err != nil {
				b.Fatal(err)
			}
			mod := load(b, r, wasm, manifest(b, string(raw)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := mod.Handle(ctx, Event{Topic: "echo-in/bench-1", Payload: payload})
				if err != nil || len(res.Publishes) != 1 {
					b.Fatal(res, err)
				}
			}
		})
		b.Run("peer-wazero/"+engine, func(b *testing.B) {
			rt, compiled := peerRuntime(b, interp, wasm)
			defer rt.Close(ctx)
			b.ReportAllocs()
			for b.Loop() {
				inst, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				res, err := inst.ExportedFunction("wasmfleet_alloc").Call(ctx, uint64(len(payload)))
				if err != nil {
					b.Fatal(err)
				}
				inst.Memory().Write(uint32(res[0]), payload)
				if _, err := inst.ExportedFunction("wasmfleet_handle").Call(ctx, res[0], uint64(len(payload))); err != nil {
					b.Fatal(err)
				}
				inst.Close(ctx)
			}
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
	b.Run("sandbox", func(b *testing.B) {
		mod := load(b, newRuntime(b, Config{}), wasm, m)
		for b.Loop() {
			if _, err := mod.Handle(ctx, Event{Payload: payload}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, closeOnDone := range []bool{false, true} {
		name := "peer-wazero"
		if closeOnDone {
			name = "peer-wazero-CloseOnContextDone"
		}
		b.Run(name, func(b *testing.B) {
			rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(closeOnDone)
			rt := wazero.NewRuntimeWithConfig(ctx, rc)
			defer rt.Close(ctx)
			peerHost(b, rt)
			compiled, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				inst, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := inst.ExportedFunction("wasmfleet_handle").Call(ctx, 1024, 1024); err != nil {
					b.Fatal(err)
				}
				inst.Close(ctx)
			}
		})
	}
}

func peerRuntime(b *testing.B, interp bool, wasm []byte) (wazero.Runtime, wazero.CompiledModule) {
	ctx := context.Background()
	rc := wazero.NewRuntimeConfig()
	if interp {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	peerHost(b, rt)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	return rt, compiled
}

// peerHost instantiates WASI and host functions of the ABI's types that do nothing.
func peerHost(b *testing.B, rt wazero.Runtime) {
	ctx := context.Background()
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	hb := rt.NewHostModuleBuilder(HostModule)
	for _, h := range hostFuncs() {
		results := len(h.results)
		hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
			if results > 0 {
				s[0] = 0
			}
		}), h.params, h.results).Export(h.name)
	}
	if _, err := hb.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
}
