package agent

import (
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
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

// watModule compiles WebAssembly text (see testenv.WAT).
func watModule(t testing.TB, src string) []byte { t.Helper(); return testenv.WAT(t, src) }
