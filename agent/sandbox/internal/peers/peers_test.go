package peers

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	example = filepath.Join("..", "..", "..", "..", "modules", "examples", "threshold-alert")
	config  = map[string]string{"threshold": "30.5"}
)

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run make deps", name)
	}
	return p
}

// TestNativeBuildPublishesWhatTheSandboxDoes: the native peer is the same handler, so it
// must publish what modules/examples_test.go expects of the wasm one, and nothing below the
// threshold.
func TestNativeBuildPublishesWhatTheSandboxDoes(t *testing.T) {
	ctx := context.Background()
	n, err := BuildNative(ctx, tool(t, "clang"), filepath.Join(example, "threshold-alert.c"), t.TempDir(), "dev-7", config)
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Run(ctx, "sensors/dev-7/temperature", []byte(`{"value": 31.2}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `alerts/dev-7/temperature {"device":"dev-7","value":31.2,"threshold":30.5}`+"\n"; got != want {
		t.Errorf("published %q, want %q", got, want)
	}
	if out, err := n.Run(ctx, "sensors/dev-7/temperature", []byte(`{"value": 30.5}`)); err != nil || len(out) != 0 {
		t.Errorf("below the threshold: %q, %v; want nothing", out, err)
	}
	if _, err := n.Run(ctx, "t", []byte(`not json`)); err == nil {
		t.Error("a malformed payload exited 0; the handler returns 1")
	}
}

func TestNodeRunsEveryEventInANewInstance(t *testing.T) {
	ctx := context.Background()
	wasm := filepath.Join(example, "threshold-alert.wasm")
	res, err := Node(ctx, t.TempDir(), wasm, "dev-7", "sensors/dev-7/temperature", config, []byte(`{"value": 31.2}`), 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 50 || !strings.HasPrefix(res.Version, "v") || res.P50NS <= 0 || res.P99NS < res.P50NS || res.MeanNS <= 0 {
		t.Errorf("result %+v", res)
	}
	// Every event is checked: one that does not publish what is expected fails the run.
	if _, err := Node(ctx, t.TempDir(), wasm, "dev-7", "t", config, []byte(`{"value": 1}`), 5, 1); err == nil {
		t.Error("events without the expected publish passed")
	}
	if _, err := Node(ctx, t.TempDir(), wasm, "dev-7", "t", config, []byte(`not json`), 5, 0); err == nil {
		t.Error("events whose handler failed passed")
	}
}

func TestLatencies(t *testing.T) {
	l := NewLatencies(100)
	if l.Percentile(0.5) != 0 {
		t.Error("no samples, yet a percentile")
	}
	for i := 1; i <= 100; i++ {
		l.Add(time.Duration(i))
	}
	if p50, p99 := l.Percentile(0.5), l.Percentile(0.99); p50 != 51 || p99 != 100 {
		t.Errorf("p50 %d p99 %d, want 51 and 100 (the sorted sample at floor(p × n))", p50, p99)
	}
	// The ring keeps the last 100: after 100 more of 1000, every percentile is 1000.
	for range 100 {
		l.Add(1000)
	}
	if p := l.Percentile(0.01); p != 1000 {
		t.Errorf("p1 after the ring turned over: %d, want 1000", p)
	}
}
