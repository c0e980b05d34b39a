package agent

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

var footprintOut = flag.String("footprint-out", "", "write TestIdleFootprint's figures to this file as benchmark lines, for the table make bench writes")

// footprintModule is an example module and an event it handles.
type footprintModule struct{ name, topic, payload string }

// TestIdleFootprint installs three example modules on a wasmfleet-agent process, built as
// make cross builds it, and reads its resident memory once they are active and the agent is
// idle, and again once each has handled 100 events and the agent is idle again. Two sets:
// threshold-alert and c-to-f (C) with echo (WAT); and threshold-alert, c-to-f and the Go
// moving-average, whose compilation alone makes some 60 MiB of garbage. The goal (issue 8)
// is 15 MiB, and the test holds the first set to it right after installing; the set with
// the Go module must stay under 40 MiB, some 25% over what it measured when the bound was
// set, which catches the agent keeping a compilation's garbage (101 MiB before it handed it
// back) or the code pages that installing ran (some 6 MiB). The figures, split into
// anonymous memory and file pages (the binary's own code and data), go to the log and, with
// -footprint-out, to a file that make bench adds to docs/BENCHMARKS.md's table.
func TestIdleFootprint(t *testing.T) {
	flags, err := crossBuildFlags()
	if err != nil {
		t.Fatal(err)
	}
	bin := testenv.GoBuild(t, "github.com/wasmfleet/wasmfleet/cmd/wasmfleet-agent", []string{"CGO_ENABLED=0"}, flags...)
	temperature := footprintModule{"threshold-alert", "sensors/{device}/temperature", `{"value": %d.5}`}
	celsius := footprintModule{"c-to-f", "sensors/{device}/celsius", `{"celsius": %d}`}
	sets := []struct {
		name  string
		mods  []footprintModule
		bound float64 // MiB
	}{
		{"c-wat", []footprintModule{temperature, celsius, {"echo", "echo-in/{device}", `{"n": %d}`}}, 15},
		{"with-go", []footprintModule{temperature, celsius, {"moving-average", "sensors/{device}/temperature", `{"value": %d.5}`}}, 40},
	}
	var lines strings.Builder
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			installed, used := idleFootprint(t, bin, set.mods)
			t.Logf("BENCH idle RSS with three modules (%s): %s after installing, %s after 100 events each", set.name, installed, used)
			for _, m := range []struct {
				when string
				m    memSplit
			}{{"installed", installed}, {"after-events", used}} {
				fmt.Fprintf(&lines, "BenchmarkIdleFootprint/%s-%s-%d 1 %d rss-bytes %d anon-bytes %d file-bytes\n",
					set.name, m.when, runtime.GOMAXPROCS(0), m.m.rss, m.m.anon, m.m.file)
			}
			if mib := float64(installed.rss) / (1 << 20); mib > set.bound {
				t.Errorf("idle RSS after installing %.1f MiB, above this set's bound of %.0f MiB", mib, set.bound)
			}
		})
	}
	if *footprintOut != "" {
		if err := os.WriteFile(*footprintOut, []byte(lines.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// idleFootprint runs bin with mods installed and returns its idle memory before and after
// each module has handled 100 events.
func idleFootprint(t *testing.T, bin string, mods []footprintModule) (installed, used memSplit) {
	const device, group = "pi-idle", "idle"
	f := newFleet(t)
	var targets []signing.ModuleTarget
	for _, m := range mods {
		manifest, wasm := example(t, m.name, m.name+".wasm")
		targets = append(targets, everyone(f.publishRelease(manifest, wasm), "r1"))
	}
	f.publishDesired(f.desiredDoc(group, targets...))
	cfg := f.agentConfig(device, group)
	cfg.Metrics.Listen = freeAddr(t)
	proc := f.startAgentProcess(bin, writeAgentYAML(t, cfg), "agent")
	f.waitStatus(device, func(s *report.Status) bool {
		n := 0
		for _, m := range s.Modules {
			if m.State == report.StateActive {
				n++
			}
		}
		return n == len(mods)
	}, "every module active")
	installed = idleRSS(t, proc, cfg.Metrics.Listen)

	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(f.mq.URL()).SetClientID("idle-pub"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	topics := map[string]string{}
	for _, m := range mods {
		topics[strings.ReplaceAll(m.topic, "{device}", device)] = m.payload
	}
	for i := range 100 {
		for topic, payload := range topics {
			if tok := c.Publish(topic, 1, false, []byte(fmt.Sprintf(payload, i))); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
	}
	f.waitStatus(device, func(s *report.Status) bool {
		for _, m := range s.Modules {
			if m.Invocations < 100 {
				return false
			}
		}
		return len(s.Modules) == len(mods)
	}, "100 events handled by each module")
	return installed, idleRSS(t, proc, cfg.Metrics.Listen)
}

// memSplit is a process's resident memory and what it is made of: anonymous memory (of
// which the Go runtime has mapped goMapped, holding goHeap of objects; the rest is wazero's
// compiled code and the like) and file pages.
type memSplit struct{ rss, anon, file, goMapped, goHeap int64 }

func (m memSplit) String() string {
	mib := func(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }
	return fmt.Sprintf("%s (anonymous %s: Go runtime %s with %s of heap objects; file %s)",
		mib(m.rss), mib(m.anon), mib(m.goMapped), mib(m.goHeap), mib(m.file))
}

// idleRSS waits until p's resident memory has stayed within 1% for 20 readings 100 ms
// apart and returns the last, read from /proc/PID/smaps_rollup, with the Go runtime's
// figures from the agent's /metrics at metricsAddr.
func idleRSS(t *testing.T, p *testenv.Process, metricsAddr string) memSplit {
	t.Helper()
	read := func() memSplit {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		var m memSplit
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				continue
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			switch k {
			case "Rss":
				m.rss = n << 10
			case "Anonymous":
				m.anon = n << 10
			}
		}
		m.file = m.rss - m.anon
		return m
	}
	var last memSplit
	stable := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for stable < 20 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("resident memory did not settle in 60 s; last %s", last)
		}
		now := read()
		if d := now.rss - last.rss; d <= last.rss/100 && -d <= last.rss/100 {
			stable++
		} else {
			stable = 0
		}
		last = now
	}
	m, err := readMetrics(metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	last.goMapped, last.goHeap = int64(m["go_memory_mapped_bytes"]), int64(m["go_memory_heap_objects_bytes"])
	return last
}
