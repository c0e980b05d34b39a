package sandbox

import (
	"context"
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
)

// wat compiles WebAssembly text (see testenv.WAT).
func wat(t testing.TB, src string) []byte { t.Helper(); return testenv.WAT(t, src) }

// manifest parses a manifest or fails the test.
func manifest(t testing.TB, yaml string) *modules.Manifest {
	t.Helper()
	m, err := modules.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// newRuntime starts a runtime with a kv store in a temp dir, closed when the test ends.
func newRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	if cfg.KV == nil {
		store, err := kv.Open(t.TempDir(), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		cfg.KV = store
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func load(t testing.TB, r *Runtime, wasm []byte, m *modules.Manifest) *Module {
	t.Helper()
	mod, err := r.Load(context.Background(), wasm, m)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return mod
}

func wantKind(t testing.TB, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want %v", err, kind)
	}
}

// handlerWAT wraps a handle body in a handler/v1 module with every host import, a bump
// allocator and one page of memory. The body sees $p and $n (payload) and returns an i32.
func handlerWAT(extra, body string) string {
	return `(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "log" (func $log (param i32 i32 i32)))
  (import "wasmfleet" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))
  (import "wasmfleet" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "clock_now" (func $clock_now (result i64)))
  (import "wasmfleet" "random_fill" (func $random_fill (param i32 i32) (result i32)))
  (import "wasmfleet" "event_topic" (func $event_topic (param i32 i32) (result i32)))
  (import "wasmfleet" "device_id" (func $device_id (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 8192))
  (func (export "wasmfleet_alloc") (param $n i32) (result i32)
    (local $q i32)
    (local.set $q (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $q))
  ` + extra + `
  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    ` + body + `))`
}
