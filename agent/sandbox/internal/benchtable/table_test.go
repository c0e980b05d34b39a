package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample is go test -bench output as `make bench` sees it: two runs, the noise go test
// prints around results, a peer's log line, and the Makefile's load average lines.
const sample = `loadavg-before: 0.52 0.61 0.70 1/234 5678
goos: linux
goarch: amd64
pkg: github.com/wasmfleet/wasmfleet/agent/sandbox
cpu: AMD EPYC
BenchmarkThresholdAlert/sandbox-compiler-2         	  283632	      4665 ns/op	    242206 events/s/core	      3405 p50-ns	     10265 p99-ns	     576 B/op	      11 allocs/op
BenchmarkThresholdAlert/peer-node-instance-2                 	1000000000	     58435 ns/op	     24456 p50-ns	    529113 p99-ns
--- BENCH: BenchmarkThresholdAlert/peer-node-instance-2
    bench_test.go:163: node v20.20.2, 5000 events, RSS 43 MiB
BenchmarkThresholdAlert/sandbox-compiler-2         	  283632	      4465 ns/op	    242206 events/s/core	      3205 p50-ns	     10065 p99-ns	     576 B/op	      11 allocs/op
BenchmarkThresholdAlert/sandbox-compiler-2         	  283632	      5465 ns/op	    242206 events/s/core	      3605 p50-ns	     10465 p99-ns	     580 B/op	      11 allocs/op
BenchmarkTightLoop
--- FAIL: BenchmarkSomething/else
PASS
ok  	github.com/wasmfleet/wasmfleet/agent/sandbox	5.819s
loadavg-after: 1.52 1.61 1.70 2/234 5679
`

func TestParse(t *testing.T) {
	res, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if res.CPU != "AMD EPYC" || res.GOOS != "linux" || res.GOARCH != "amd64" || res.Procs != 2 || res.Node != "v20.20.2" {
		t.Errorf("machine: %+v", res)
	}
	if len(res.LoadAvg) != 2 || loadAvg(res.LoadAvg) != "0.52 0.61 0.70 before, 1.52 1.61 1.70 after" {
		t.Errorf("load average %q: %q", res.LoadAvg, loadAvg(res.LoadAvg))
	}
	for _, c := range []struct {
		bench, unit string
		want        float64
	}{
		{"ThresholdAlert/sandbox-compiler", "ns/op", 4665},
		{"ThresholdAlert/sandbox-compiler", "p50-ns", 3405},
		{"ThresholdAlert/sandbox-compiler", "B/op", 576},
		{"ThresholdAlert/peer-node-instance", "p99-ns", 529113},
	} {
		if got, ok := res.Median(c.bench, c.unit); !ok || got != c.want {
			t.Errorf("median %s %s = %v, %v; want %v", c.bench, c.unit, got, ok, c.want)
		}
	}
	if n := res.Count("ThresholdAlert/sandbox-compiler"); n != 3 {
		t.Errorf("%d runs, want 3", n)
	}
	if _, ok := res.Median("ThresholdAlert/sandbox-compiler", "no-such-unit"); ok {
		t.Error("a unit never reported has a median")
	}
	// An even number of runs: the mean of the middle two.
	res, err = Parse(strings.NewReader("BenchmarkA-4 1 10 ns/op\nBenchmarkA-4 1 20 ns/op\nBenchmarkA-4 1 40 ns/op\nBenchmarkA-4 1 30 ns/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Median("A", "ns/op"); got != 25 || res.Procs != 4 {
		t.Errorf("median %v procs %d, want 25 and 4", got, res.Procs)
	}
}

// malformed are inputs Parse must refuse, with an error rather than a panic or a table of
// made-up figures.
var malformed = map[string]string{
	"empty":                 "",
	"no benchmark lines":    "goos: linux\nPASS\n",
	"iterations not number": "BenchmarkA-2 many 10 ns/op\n",
	"negative iterations":   "BenchmarkA-2 -1 10 ns/op\n",
	"value not a number":    "BenchmarkA-2 1 ten ns/op\n",
	"NaN value":             "BenchmarkA-2 1 NaN ns/op\n",
	"infinite value":        "BenchmarkA-2 1 +Inf ns/op\n",
	"negative value":        "BenchmarkA-2 1 -5 ns/op\n",
	"value without unit":    "BenchmarkA-2 1 10 ns/op 20\n",
	"no value":              "BenchmarkA-2 1\n",
	"empty name":            "Benchmark-2 1 10 ns/op\n",
	"line too long":         "BenchmarkA-2 1 10 ns/op" + strings.Repeat(" 1 x", maxLine) + "\n",
}

func TestParseMalformed(t *testing.T) {
	for name, in := range malformed {
		if res, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parsed as %+v", name, res)
		}
	}
}

// full is a run with every benchmark of the table, values chosen so that the ratios are
// easy to check: each peer takes ten times the sandbox.
func full() string {
	var b strings.Builder
	b.WriteString("cpu: Test CPU\ngoos: linux\ngoarch: arm64\n")
	seen := map[string]bool{}
	line := func(name string, ns float64) {
		if seen[name] {
			return
		}
		seen[name] = true
		fmt.Fprintf(&b, "Benchmark%s-4 100 %g ns/op %g cpu-ns/op %g events/s/core %g p50-ns %g p99-ns 512 B/op 7 allocs/op\n", name, ns, ns*0.8, 1e9/ns, ns*0.9, ns*3)
	}
	for _, g := range groups {
		for _, r := range g.rows {
			ns := 1000.0
			if r.sandbox != "" {
				ns = 10000
			}
			line(r.bench, ns)
		}
	}
	line("ThresholdAlert/sandbox-compiler-parallel", 600)
	b.WriteString("BenchmarkEndToEnd/broker-pubsub-4 20000 40000 ns/op 25000 events/s 0 process-cpu-ns/op 20000 broker-cpu-ns/op 40000 client-cpu-ns/op\n")
	b.WriteString("BenchmarkEndToEnd/paho-relay-4 20000 100000 ns/op 10000 events/s 35000 process-cpu-ns/op 40000 broker-cpu-ns/op 50000 client-cpu-ns/op\n")
	b.WriteString("BenchmarkEndToEnd/agent-threshold-alert-4 20000 200000 ns/op 5000 events/s 45000 process-cpu-ns/op 42000 broker-cpu-ns/op 55000 client-cpu-ns/op 21000000 rss-bytes\n")
	b.WriteString("BenchmarkIdleFootprint/c-wat-installed-4 1 20971520 rss-bytes 8388608 anon-bytes 12582912 file-bytes\n")
	b.WriteString("BenchmarkIdleFootprint/with-go-installed-4 1 41943040 rss-bytes 29360128 anon-bytes 12582912 file-bytes\n")
	b.WriteString("    bench_test.go:1: node v22.1.0, 5000 events\n")
	return b.String()
}

func TestRender(t *testing.T) {
	res, err := Parse(strings.NewReader(full()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(res, Machine{MemTotal: "8 GiB", GoVersion: "go1.26.8", Wazero: "v1.12.0", Date: "2026-11-26"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Machine: 4 cores (`cpu: Test CPU`), 8 GiB, linux/arm64, go1.26.8, wazero v1.12.0, Node.js v22.1.0. Median of 1 runs",
		"| **sandbox**, compiler | 900 ns | 3.00 µs | 1.00 µs | 800 ns | 512 B | 7 |  |",
		"| native build (-O2), fork/exec per event | 9.00 µs | 30.0 µs | 10.0 µs |  |  |  | 10×, 10× |",
		"| threshold-alert event, p50 | ≤ 20 µs | 900 ns | yes |",
		"| faster than fork/exec of the native build (p50; mean) | ≥ 50× | 10×; 10× | **no** |",
		"| limits on hash 4 MiB, SHA-256 (÷ no limits: CPU per event; p50) | ≤ 1.5× | 0.10×; 0.10× | yes |",
		"| threshold-alert events per second per core (one goroutine; two) | ≥ 40,000 | 1,000,000; 1,666,667 | yes |",
		"| reading → wasmfleet-agent (threshold-alert) → alert → subscriber | 5,000 | 0.20× | 45.0 µs | 42.0 µs | 55.0 µs |",
		"| the broker's own pub→sub (a publisher, a subscriber on its topic) | 25,000 | 1.00× | — | 20.0 µs | 40.0 µs |",
		"| reading → bare paho relay (subscribe, publish, acknowledge; no sandbox) → subscriber | 10,000 | 0.40× |",
		"| end to end, ÷ a bare paho relay's rate (same run) | reported | 50% |  |",
		"| end to end through Mosquitto, ÷ the broker's pub→sub rate | ≥ 70% | 20% | **no** |",
		"median of 1 rounds of 20,000 events each",
		"| threshold-alert, c-to-f (C), echo (WAT) | installed, idle | 20.0 MiB | 8.00 MiB | 12.0 MiB |",
		"| idle RSS with three modules installed (C and WAT) | ≤ 15 MiB | 20.0 MiB (with the Go module: 40.0 MiB) | **no** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderNeedsEveryBenchmark(t *testing.T) {
	in := full()
	for _, missing := range []string{"ThresholdAlert/peer-node-instance", "Hash4MiB/fnv/sandbox-compiler", "ThresholdAlert/sandbox-compiler-parallel"} {
		var kept []string
		for _, l := range strings.Split(in, "\n") {
			if !strings.HasPrefix(l, "Benchmark"+missing+"-") {
				kept = append(kept, l)
			}
		}
		res, err := Parse(strings.NewReader(strings.Join(kept, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Render(res, Machine{}); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: %v, want an error naming it", missing, err)
		}
	}
}

func TestReplace(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n" + Begin + "\nold table\n" + End + "\n\nreading\n"
	got, err := Replace([]byte(doc), Begin, End, []byte("new table"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Benchmarks\n\nintro\n" + Begin + "\nnew table\n" + End + "\n\nreading\n"; string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Replacing again changes nothing more.
	again, err := Replace(got, Begin, End, []byte("new table\n"))
	if err != nil || !bytes.Equal(again, got) {
		t.Errorf("second replace: %v\n%s", err, again)
	}
	for name, bad := range map[string]string{
		"no markers": "text",
		"no end":     Begin + "\nx\n",
		"reversed":   End + "\n" + Begin + "\n",
		"twice":      Begin + "\n" + End + "\n" + Begin + "\n" + End + "\n",
		"begin only": "a" + Begin,
		"end only":   End,
	} {
		if out, err := Replace([]byte(bad), Begin, End, []byte("x")); err == nil {
			t.Errorf("%s: replaced into %q", name, out)
		}
	}
}

// TestDocHasMarkers: docs/BENCHMARKS.md holds the markers make bench writes between.
func TestDocHasMarkers(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replace(doc, Begin, End, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add(full())
	for _, in := range malformed {
		if len(in) < 4096 {
			f.Add(in)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		res, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parsed renders or names what is missing; it never panics.
		Render(res, Machine{})
		for name := range res.Runs {
			for unit := range res.Runs[name] {
				if v, ok := res.Median(name, unit); !ok || v < 0 {
					t.Fatalf("median of %s %s: %v %v", name, unit, v, ok)
				}
			}
		}
	})
}

func FuzzReplace(f *testing.F) {
	f.Add("intro\n"+Begin+"\nold\n"+End+"\n", "new")
	f.Add(Begin+End, "")
	f.Add(End+Begin, "x")
	f.Fuzz(func(t *testing.T, doc, body string) {
		out, err := Replace([]byte(doc), Begin, End, []byte(body))
		if err != nil {
			return
		}
		if !bytes.Contains(out, []byte(body)) || !bytes.HasPrefix(out, []byte(doc[:strings.Index(doc, Begin)])) {
			t.Fatalf("Replace(%q, %q) = %q", doc, body, out)
		}
	})
}
