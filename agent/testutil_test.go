package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
)

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add()       { c.n.Add(1) }
func (c *atomicCounter) get() int64 { return c.n.Load() }

func testLog(t testing.TB) zerolog.Logger { return zerolog.New(zerolog.NewTestWriter(t)) }

func testRef(name string) signing.ReleaseRef {
	return signing.ReleaseRef{Name: name, Version: "1.0.0", SHA256: "0000000000000000000000000000000000000000000000000000000000000000", Size: 1}
}

func newTestRuntime(t testing.TB) *sandbox.Runtime {
	t.Helper()
	rt, err := sandbox.New(t.Context(), sandbox.Config{DeviceID: "pi-1", WorkDir: t.TempDir(), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(t.Context()) })
	return rt
}

func testManifest(t testing.TB, yaml string) *modules.Manifest {
	t.Helper()
	m, err := modules.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// watModule compiles WebAssembly text with wabt's wat2wasm (installed by make deps).
func watModule(t testing.TB, src string) []byte {
	t.Helper()
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatal("wat2wasm not found: run make deps (Debian package wabt)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bin, in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
