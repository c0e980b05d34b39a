// Package peers runs the peers of agent/sandbox's benchmarks that live outside Go: a native
// build of a C handler, run by fork/exec once per event (the process-per-event model), and
// Node.js's WebAssembly API with a new instance per event. It also holds the latency
// recorder the benchmarks share, so that every figure's p50 and p99 mean the same thing.
//
// It builds and runs programs; it measures nothing by itself and is only for benchmarks.
package peers

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed wasmfleet_native.h
var nativeHeader []byte

//go:embed node_driver.js
var nodeDriver []byte

// Native is a handler's C source built as an ordinary program against a native stand-in for
// the C SDK (wasmfleet_native.h): the payload on stdin, publishes on stdout as
// "topic payload" lines, the handler's result as the exit code.
type Native struct {
	Path string // the executable
	Env  []string
}

// BuildNative compiles the C handler src with cc (clang or gcc, -O2, as a distribution would
// build a small daemon: dynamically linked) into dir. device and config become the
// environment the stand-in SDK reads.
func BuildNative(ctx context.Context, cc, src, dir, device string, config map[string]string) (*Native, error) {
	shim := filepath.Join(dir, "include")
	if err := os.MkdirAll(shim, 0o755); err != nil {
		return nil, fmt.Errorf("build native %s: %w", src, err)
	}
	if err := os.WriteFile(filepath.Join(shim, "wasmfleet.h"), nativeHeader, 0o644); err != nil {
		return nil, fmt.Errorf("build native %s: %w", src, err)
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".c"))
	// #include "wasmfleet.h" finds the stand-in: the source's own directory has no SDK.
	cmd := exec.CommandContext(ctx, cc, "-O2", "-I", shim, "-o", out, src)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build native %s: %v\n%s", src, err, msg)
	}
	n := &Native{Path: out, Env: []string{"WASMFLEET_DEVICE_ID=" + device}}
	for k, v := range config {
		n.Env = append(n.Env, "WASMFLEET_CONFIG_"+k+"="+v)
	}
	slices.Sort(n.Env)
	return n, nil
}

// Run runs one event in a new process and returns what it published.
func (n *Native) Run(ctx context.Context, topic string, payload []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.Path)
	cmd.Env = append(n.Env, "WASMFLEET_TOPIC="+topic)
	cmd.Stdin = bytes.NewReader(payload)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run %s: %w", n.Path, err)
	}
	return out.Bytes(), nil
}

// NodeResult is what the Node.js driver measured.
type NodeResult struct {
	Version string  `json:"node"`
	Events  int     `json:"events"`
	MeanNS  float64 `json:"mean_ns"`
	P50NS   float64 `json:"p50_ns"`
	P99NS   float64 `json:"p99_ns"`
	RSS     int64   `json:"rss_bytes"`
}

// NodeBinary returns the path of Node.js (Debian's package installs both node and nodejs).
func NodeBinary() (string, error) {
	for _, name := range []string{"node", "nodejs"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("node.js not found: run make deps (Debian package nodejs)")
}

// Node runs events handler/v1 events of the module at wasmPath in Node.js, each in a new
// WebAssembly.Instance, after a warm-up of up to 1,000 events, and returns the driver's
// timings. Every event must succeed with want publishes.
func Node(ctx context.Context, dir, wasmPath, device, topic string, config map[string]string, payload []byte, events, want int) (*NodeResult, error) {
	node, err := NodeBinary()
	if err != nil {
		return nil, err
	}
	driver := filepath.Join(dir, "node_driver.js")
	if err := os.WriteFile(driver, nodeDriver, 0o644); err != nil {
		return nil, fmt.Errorf("node peer: %w", err)
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("node peer: %w", err)
	}
	cmd := exec.CommandContext(ctx, node, driver, wasmPath, base64.StdEncoding.EncodeToString(payload), device,
		string(cfg), topic, strconv.Itoa(events), strconv.Itoa(want))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node peer: %v\n%s", err, stderr.Bytes())
	}
	var res NodeResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return nil, fmt.Errorf("node peer: output %q: %w", out, err)
	}
	if res.Events != events {
		return nil, fmt.Errorf("node peer: ran %d events, want %d", res.Events, events)
	}
	return &res, nil
}

// Latencies records how long each event took: up to len(samples) of them, kept in a ring so
// that recording never allocates inside a benchmark's loop.
type Latencies struct {
	samples []time.Duration
	n       int
}

// NewLatencies keeps the last max samples.
func NewLatencies(max int) *Latencies { return &Latencies{samples: make([]time.Duration, max)} }

// Add records one event.
func (l *Latencies) Add(d time.Duration) {
	l.samples[l.n%len(l.samples)] = d
	l.n++
}

// Percentile returns the p-th percentile (0 < p < 1) of the samples kept: the sorted
// sample at index floor(p × count), the convention node_driver.js follows too.
func (l *Latencies) Percentile(p float64) time.Duration {
	k := min(l.n, len(l.samples))
	if k == 0 {
		return 0
	}
	s := slices.Clone(l.samples[:k])
	slices.Sort(s)
	return s[min(k-1, int(p*float64(k)))]
}
