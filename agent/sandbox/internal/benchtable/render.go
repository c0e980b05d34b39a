package main

import (
	"fmt"
	"math"
	"strings"
)

// row is one line of the latency table: a benchmark, and for a peer the sandbox benchmark it
// is compared with (the ratio is peer ÷ sandbox: how many times faster the sandbox is).
type row struct {
	label, bench, sandbox string
}

type group struct {
	title string
	rows  []row
}

const ta = "ThresholdAlert/"

// groups is the latency table, in order. Every benchmark named here must be in the input.
var groups = []group{
	{"threshold-alert (C): a 70-byte JSON reading in, one alert out", []row{
		{"**sandbox**, compiler", ta + "sandbox-compiler", ""},
		{"plain wazero, a fresh instance per event (naive)", ta + "peer-wazero-naive-compiler", ta + "sandbox-compiler"},
		{"native build (-O2), fork/exec per event", ta + "peer-native-forkexec", ta + "sandbox-compiler"},
		{"Node.js, `new WebAssembly.Instance` per event", ta + "peer-node-instance", ta + "sandbox-compiler"},
		{"sandbox, compiler, writes not recorded (every restore compares all of memory)", ta + "sandbox-compiler-unrecorded", ta + "sandbox-compiler"},
		{"**sandbox**, interpreter (32-bit ARM's engine)", ta + "sandbox-interpreter", ""},
		{"plain wazero interpreter, fresh instance (naive)", ta + "peer-wazero-naive-interpreter", ta + "sandbox-interpreter"},
	}},
	{"moving-average (Go wasip1): kv read and written every event", []row{
		{"**sandbox**, compiler", "MovingAverage/sandbox-compiler", ""},
		{"plain wazero, a fresh instance per event (naive)", "MovingAverage/peer-wazero-naive-compiler", "MovingAverage/sandbox-compiler"},
		{"**sandbox**, interpreter", "MovingAverage/sandbox-interpreter", ""},
	}},
	{"echo (WAT): a 64-byte payload in, one publish out", []row{
		{"**sandbox**, compiler", "Event/sandbox-compiler", ""},
		{"plain wazero, fresh instance (naive)", "Event/peer-wazero-naive-compiler", "Event/sandbox-compiler"},
		{"**sandbox**, interpreter", "Event/sandbox-interpreter", ""},
		{"plain wazero interpreter, fresh instance (naive)", "Event/peer-wazero-naive-interpreter", "Event/sandbox-interpreter"},
	}},
	{"hash (C): fill 4 MiB from the payload, SHA-256 it", []row{
		{"**sandbox**, every limit in force", "Hash4MiB/sha256/sandbox-compiler", ""},
		{"plain wazero, one instance reused, no limits (not pristine)", "Hash4MiB/sha256/peer-wazero-warm-compiler", "Hash4MiB/sha256/sandbox-compiler"},
	}},
	{"hash (C): fill 4 MiB, FNV-1a byte by byte (the tightest real loop)", []row{
		{"**sandbox**, every limit in force", "Hash4MiB/fnv/sandbox-compiler", ""},
		{"plain wazero, one instance reused, no limits (not pristine)", "Hash4MiB/fnv/peer-wazero-warm-compiler", "Hash4MiB/fnv/sandbox-compiler"},
	}},
	{"stores: 32 KiB written byte by byte (the worst case for recording writes)", []row{
		{"**sandbox**, compiler, writes recorded", "Stores/sandbox-compiler", ""},
		{"sandbox, compiler, writes not recorded (every restore compares all of memory)", "Stores/sandbox-compiler-unrecorded", "Stores/sandbox-compiler"},
		{"plain wazero, one instance reused (not pristine)", "Stores/peer-wazero-warm-compiler", "Stores/sandbox-compiler"},
	}},
	{"tight loop: 1,048,576 empty iterations (the worst case for a check per iteration)", []row{
		{"**sandbox**", "TightLoop/sandbox-compiler", ""},
		{"plain wazero (cannot be stopped)", "TightLoop/peer-wazero-naive-compiler", "TightLoop/sandbox-compiler"},
		{"plain wazero, `WithCloseOnContextDone` (stops loops only)", "TightLoop/peer-wazero-CloseOnContextDone-compiler", "TightLoop/sandbox-compiler"},
	}},
}

// Machine describes where the figures were taken.
type Machine struct {
	MemTotal  string // "24 GiB"
	GoVersion string
	Wazero    string
	Date      string
}

// Render returns the tables of docs/BENCHMARKS.md's sandbox section for res, or an error
// naming the first benchmark missing from it.
func Render(res *Results, m Machine) (string, error) {
	med := func(bench, unit string) (float64, error) {
		v, ok := res.Median(bench, unit)
		if !ok {
			return 0, fmt.Errorf("benchmark %s has no %s in the input (did it run, or fail?)", bench, unit)
		}
		return v, nil
	}
	var b strings.Builder
	runs := res.Count(ta + "sandbox-compiler")
	fmt.Fprintf(&b, "Machine: %d cores (`cpu: %s`), %s, %s/%s, %s, wazero %s, Node.js %s. ",
		res.Procs, res.CPU, m.MemTotal, res.GOOS, res.GOARCH, m.GoVersion, m.Wazero, orDash(res.Node))
	fmt.Fprintf(&b, "Median of %d runs (`make bench`, %s)", runs, m.Date)
	if len(res.LoadAvg) > 0 {
		fmt.Fprintf(&b, "; load average (1, 5, 15 min) %s", loadAvg(res.LoadAvg))
	}
	b.WriteString(".\n\n")

	b.WriteString("| event | run by | p50 | p99 | mean | CPU / event | heap / event | allocs / event | peer ÷ sandbox (p50, mean) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range groups {
		for i, r := range g.rows {
			title := ""
			if i == 0 {
				title = g.title
			}
			p50, err := med(r.bench, "p50-ns")
			if err != nil {
				return "", err
			}
			p99, err := med(r.bench, "p99-ns")
			if err != nil {
				return "", err
			}
			mean, err := med(r.bench, "ns/op")
			if err != nil {
				return "", err
			}
			cpu, heap, allocs := "", "", ""
			if !strings.Contains(r.bench, "peer-native") && !strings.Contains(r.bench, "peer-node") {
				bop, err := med(r.bench, "B/op")
				if err != nil {
					return "", err
				}
				cop, err := med(r.bench, "cpu-ns/op")
				if err != nil {
					return "", err
				}
				aop, _ := med(r.bench, "allocs/op")
				cpu, heap, allocs = duration(cop), bytesString(bop), fmt.Sprintf("%.0f", aop)
			}
			ratio := ""
			if r.sandbox != "" {
				sp50, err := med(r.sandbox, "p50-ns")
				if err != nil {
					return "", err
				}
				smean, err := med(r.sandbox, "ns/op")
				if err != nil {
					return "", err
				}
				ratio = fmt.Sprintf("%s, %s", times(p50/sp50), times(mean/smean))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", title, r.label,
				duration(p50), duration(p99), duration(mean), cpu, heap, allocs, ratio)
		}
	}

	// The goals of issue 8, each against its figure.
	type goal struct {
		what, target, got string
		met               bool
	}
	var goals []goal
	v := map[string]float64{}
	for _, k := range []struct{ key, bench, unit string }{
		{"ta50", ta + "sandbox-compiler", "p50-ns"}, {"ta99", ta + "sandbox-compiler", "p99-ns"},
		{"taMean", ta + "sandbox-compiler", "ns/op"}, {"taHeap", ta + "sandbox-compiler", "B/op"},
		{"taRate", ta + "sandbox-compiler", "events/s/core"}, {"taParRate", ta + "sandbox-compiler-parallel", "events/s/core"},
		{"naive50", ta + "peer-wazero-naive-compiler", "p50-ns"}, {"naiveMean", ta + "peer-wazero-naive-compiler", "ns/op"},
		{"native50", ta + "peer-native-forkexec", "p50-ns"}, {"nativeMean", ta + "peer-native-forkexec", "ns/op"},
		{"node50", ta + "peer-node-instance", "p50-ns"}, {"nodeMean", ta + "peer-node-instance", "ns/op"},
		{"ma50", "MovingAverage/sandbox-compiler", "p50-ns"}, {"maHeap", "MovingAverage/sandbox-compiler", "B/op"},
		{"sha", "Hash4MiB/sha256/sandbox-compiler", "p50-ns"}, {"shaPeer", "Hash4MiB/sha256/peer-wazero-warm-compiler", "p50-ns"},
		{"fnv", "Hash4MiB/fnv/sandbox-compiler", "p50-ns"}, {"fnvPeer", "Hash4MiB/fnv/peer-wazero-warm-compiler", "p50-ns"},
		{"shaCPU", "Hash4MiB/sha256/sandbox-compiler", "cpu-ns/op"}, {"shaPeerCPU", "Hash4MiB/sha256/peer-wazero-warm-compiler", "cpu-ns/op"},
		{"fnvCPU", "Hash4MiB/fnv/sandbox-compiler", "cpu-ns/op"}, {"fnvPeerCPU", "Hash4MiB/fnv/peer-wazero-warm-compiler", "cpu-ns/op"},
	} {
		x, err := med(k.bench, k.unit)
		if err != nil {
			return "", err
		}
		v[k.key] = x
	}
	goals = append(goals,
		goal{"threshold-alert event, p50", "≤ 20 µs", duration(v["ta50"]), v["ta50"] <= 20e3},
		goal{"threshold-alert event, p99", "≤ 100 µs", duration(v["ta99"]), v["ta99"] <= 100e3},
		goal{"faster than plain wazero, instance per event (p50; mean)", "≥ 8×",
			times(v["naive50"]/v["ta50"]) + "; " + times(v["naiveMean"]/v["taMean"]), v["naive50"]/v["ta50"] >= 8},
		goal{"faster than fork/exec of the native build (p50; mean)", "≥ 50×",
			times(v["native50"]/v["ta50"]) + "; " + times(v["nativeMean"]/v["taMean"]), v["native50"]/v["ta50"] >= 50},
		goal{"against Node.js, new instance per event (p50; mean)", "reported",
			times(v["node50"]/v["ta50"]) + "; " + times(v["nodeMean"]/v["taMean"]), true},
		goal{"moving-average (Go) event, p50", "≤ 1 ms", duration(v["ma50"]), v["ma50"] <= 1e6},
		goal{"limits on hash 4 MiB, SHA-256 (÷ no limits: CPU per event; p50)", "≤ 1.5×",
			times(v["shaCPU"]/v["shaPeerCPU"]) + "; " + times(v["sha"]/v["shaPeer"]), v["shaCPU"]/v["shaPeerCPU"] <= 1.5},
		goal{"limits on hash 4 MiB, FNV-1a byte loop (÷ no limits: CPU per event; p50)", "≤ 1.5×",
			times(v["fnvCPU"]/v["fnvPeerCPU"]) + "; " + times(v["fnv"]/v["fnvPeer"]), v["fnvCPU"]/v["fnvPeerCPU"] <= 1.5},
		goal{"threshold-alert events per second per core (one goroutine; two)", "≥ 40,000",
			fmt.Sprintf("%s; %s", thousands(v["taRate"]), thousands(v["taParRate"])), v["taRate"] >= 40000 && v["taParRate"] >= 40000},
		goal{"heap allocated per event, threshold-alert (moving-average)", "≤ 16 KiB",
			fmt.Sprintf("%s (%s)", bytesString(v["taHeap"]), bytesString(v["maHeap"])), v["taHeap"] <= 16<<10},
	)
	// End to end through Mosquitto (agent's TestEndToEndRate), when it ran.
	const e2eB, e2eR, e2eA = "EndToEnd/broker-pubsub", "EndToEnd/paho-relay", "EndToEnd/agent-threshold-alert"
	e2eBroker, okB := res.Median(e2eB, "events/s")
	e2eAgent, okA := res.Median(e2eA, "events/s")
	if okB && okA {
		rss, _ := res.Median(e2eA, "rss-bytes")
		fmt.Fprintf(&b, "\nEnd to end through a real Mosquitto on loopback (`TestEndToEndRate` in agent/, median of %d rounds of %s events each, QoS 1 both ways, at most %s in flight). CPU is per event, over all rounds: the process between publisher and subscriber, the broker, and the test's publisher and subscriber, which all share the machine's cores:\n\n",
			res.Count(e2eA), thousands(res.Runs[e2eA]["iterations"][0]), "32")
		b.WriteString("| path | events / s | ÷ broker | CPU: relay or agent | CPU: broker | CPU: test's clients |\n|---|---|---|---|---|---|\n")
		cpu := func(name, unit string) string {
			v, ok := res.Median(name, unit)
			if !ok || v == 0 {
				return "—"
			}
			return duration(v)
		}
		row := func(what, name string) {
			r, ok := res.Median(name, "events/s")
			if !ok {
				return
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", what, thousands(r), times(r/e2eBroker),
				cpu(name, "process-cpu-ns/op"), cpu(name, "broker-cpu-ns/op"), cpu(name, "client-cpu-ns/op"))
		}
		row("the broker's own pub→sub (a publisher, a subscriber on its topic)", e2eB)
		row("reading → bare paho relay (subscribe, publish, acknowledge; no sandbox) → subscriber", e2eR)
		row("reading → wasmfleet-agent (threshold-alert) → alert → subscriber", e2eA)
		fmt.Fprintf(&b, "\nThe agent process's resident memory after the run: %s.\n", bytesString(rss))
		goals = append(goals, goal{"end to end through Mosquitto, ÷ the broker's pub→sub rate", "≥ 70%",
			fmt.Sprintf("%.0f%%", 100*e2eAgent/e2eBroker), e2eAgent/e2eBroker >= 0.7})
		if relay, ok := res.Median(e2eR, "events/s"); ok {
			goals = append(goals, goal{"end to end, ÷ a bare paho relay's rate (same run)", "reported",
				fmt.Sprintf("%.0f%%", 100*e2eAgent/relay), true})
		}
	}

	// Idle memory of the agent process (agent's TestIdleFootprint), when it ran.
	const fpC, fpGo = "IdleFootprint/c-wat-installed", "IdleFootprint/with-go-installed"
	if rss, ok := res.Median(fpC, "rss-bytes"); ok {
		b.WriteString("\nIdle resident memory of the wasmfleet-agent process (`TestIdleFootprint` in agent/; static, stripped, as `make cross` builds it) with three modules installed; file pages are the binary's own code and data:\n\n")
		b.WriteString("| modules | when | RSS | anonymous | file pages |\n|---|---|---|---|---|\n")
		for _, set := range []struct{ name, what string }{
			{"c-wat", "threshold-alert, c-to-f (C), echo (WAT)"},
			{"with-go", "threshold-alert, c-to-f (C), moving-average (Go)"},
		} {
			for _, when := range []struct{ name, what string }{{"installed", "installed, idle"}, {"after-events", "after 100 events each, idle"}} {
				name := "IdleFootprint/" + set.name + "-" + when.name
				r, ok := res.Median(name, "rss-bytes")
				if !ok {
					continue
				}
				anon, _ := res.Median(name, "anon-bytes")
				file, _ := res.Median(name, "file-bytes")
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", set.what, when.what, bytesString(r), bytesString(anon), bytesString(file))
			}
		}
		got := bytesString(rss)
		if g, ok := res.Median(fpGo, "rss-bytes"); ok {
			got += " (with the Go module: " + bytesString(g) + ")"
		}
		goals = append(goals, goal{"idle RSS with three modules installed (C and WAT)", "≤ 15 MiB", got, rss <= 15<<20})
	}

	b.WriteString("\n| goal (issue 8) | target | measured | met |\n|---|---|---|---|\n")
	for _, g := range goals {
		met := "yes"
		if !g.met {
			met = "**no**"
		}
		if g.target == "reported" {
			met = ""
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.what, g.target, g.got, met)
	}
	return b.String(), nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// loadAvg shortens the Makefile's "loadavg-before: 1.2 0.9 0.8 2/300 123" lines to
// "1.20 0.90 0.80 before, … after".
func loadAvg(lines []string) string {
	var parts []string
	for _, l := range lines {
		when, rest, _ := strings.Cut(strings.TrimPrefix(l, "loadavg-"), ":")
		f := strings.Fields(rest)
		if len(f) > 3 {
			f = f[:3]
		}
		parts = append(parts, strings.Join(f, " ")+" "+when)
	}
	return strings.Join(parts, ", ")
}

// duration formats nanoseconds with three significant digits.
func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return sig3(ns/1e9) + " s"
	case ns >= 1e6:
		return sig3(ns/1e6) + " ms"
	case ns >= 1e3:
		return sig3(ns/1e3) + " µs"
	}
	return sig3(ns) + " ns"
}

func sig3(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func times(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func bytesString(n float64) string {
	if n >= 1<<20 {
		return sig3(n/(1<<20)) + " MiB"
	}
	if n >= 1<<10 {
		return sig3(n/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%.0f B", n)
}

// thousands formats a rate as an integer with thousands separators.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
