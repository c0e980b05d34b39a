package agent

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

var (
	e2eEvents = flag.Int("e2e-events", 300, "readings per measurement of TestEndToEndRate (make bench: 20000)")
	e2eOut    = flag.String("e2e-out", "", "write TestEndToEndRate's figures to this file as benchmark lines, for the table make bench writes")
)

// e2eWindow is how many messages may be on their way at once, in both measurements: fewer
// than the agent's queue (64), which drops what it cannot hold.
const e2eWindow = 32

// TestEndToEndRate measures the round trip the agent is for, through a real Mosquitto on
// loopback: a reading published (QoS 1), the wasmfleet-agent process's threshold-alert
// handler, its alert published back (QoS 1), a subscriber receiving it. Its peers, in the
// same run: the broker's own pub→sub rate (the same publisher and subscriber, QoS 1, the
// same window of messages in flight, the subscriber on the publisher's topic), and a bare
// paho relay process (agent/testdata/relay: subscribe, publish, acknowledge; no sandbox), what
// a paho program with paho's defaults costs doing nothing else. Three rounds of each, in turn. Every
// reading must come back exactly once (an alert carries its reading's number). Besides the
// rates it records the CPU time each process spent per event (the relay or agent, the
// broker, and this test's publisher and subscriber), which says where a gap to the broker's
// rate comes from when they share the machine's cores. The figures go to the log and, with
// -e2e-out, to a file that make bench adds to docs/BENCHMARKS.md's table.
func TestEndToEndRate(t *testing.T) {
	const device, group = "pi-rate", "rate"
	bin := buildAgent(t)
	relayBin := testenv.GoBuild(t, "github.com/wasmfleet/wasmfleet/agent/testdata/relay", nil)
	f := newFleet(t)
	// The agent and every measurement use a broker that saves its database as a deployed one
	// does (fastBroker), not the fleet's.
	mq := testenv.StartMosquitto(t, fastBroker)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	ref := f.publishRelease(manifest, wasm)
	desired := f.publishDesired(f.desiredDoc(group, everyone(ref, "r1")))
	retain(t, mq.URL(), report.Topics{}.GroupDesired(group), desired)
	cfg := f.agentConfig(device, group)
	cfg.MQTT.Brokers = []string{mq.URL()}
	proc := f.startAgentProcess(bin, writeAgentYAML(t, cfg), "agent")
	relay := testenv.StartProcess(t, testenv.ProcessOptions{Name: "relay", Path: relayBin,
		Args: []string{"-broker", mq.URL(), "-in", "relay/in", "-out", "relay/out"}})

	in, out := "sensors/"+device+"/temperature", "alerts/"+device+"/temperature"
	reading := func(i int) []byte { return []byte(fmt.Sprintf(`{"value": %d.5}`, 1_000_000+i)) }
	alert := regexp.MustCompile(`"value":(1\d{6})\.5,`)
	relayed := regexp.MustCompile(`"value": (1\d{6})\.5}`)
	// Installed and running once a reading comes back as an alert.
	waitFor(t, 60*time.Second, func() bool { return tryRoundTrip(t, mq.URL(), in, out) }, func() string { return "the agent's first alert" })
	waitFor(t, 20*time.Second, func() bool { return tryRoundTrip(t, mq.URL(), "relay/in", "relay/out") }, func() string { return "the relay" })

	n := *e2eEvents
	type path struct {
		name      string
		in, out   string
		id        *regexp.Regexp
		proc      *testenv.Process // the process between publisher and subscriber, if any
		rates     []float64
		cpu       [3]time.Duration // in all rounds: that process, the broker, this test's clients
		cpuLabels [3]string
	}
	paths := []*path{
		{name: "broker-pubsub", in: "bench/x", out: "bench/x"},
		{name: "paho-relay", in: "relay/in", out: "relay/out", id: relayed, proc: relay},
		{name: "agent-threshold-alert", in: in, out: out, id: alert, proc: proc},
	}
	cpuNow := func(p *path) [3]time.Duration {
		var c [3]time.Duration
		var err error
		if p.proc != nil {
			if c[0], err = testenv.ProcessCPU(p.proc.Pid()); err != nil {
				t.Fatal(err)
			}
		}
		if c[1], err = mq.CPU(); err != nil {
			t.Fatal(err)
		}
		if c[2], err = testenv.ProcessCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for range 3 {
		for _, p := range paths {
			before := cpuNow(p)
			p.rates = append(p.rates, roundTrips(t, mq.URL(), p.in, p.out, n, reading, p.id))
			after := cpuNow(p)
			for i := range p.cpu {
				p.cpu[i] += after[i] - before[i]
			}
		}
	}
	st, err := proc.Stats()
	if err != nil {
		t.Fatal(err)
	}
	perEvent := func(p *path, i int) float64 { return float64(p.cpu[i].Nanoseconds()) / float64(3*n) }
	broker := paths[0]
	for _, p := range paths {
		t.Logf("BENCH end to end, %d events a round, window %d: %s %.0f/s (%.0f), %.0f%% of the broker's pub→sub (medians); CPU an event: process %.1f µs, broker %.1f µs, test's clients %.1f µs",
			n, e2eWindow, p.name, median(p.rates), p.rates, 100*median(p.rates)/median(broker.rates), perEvent(p, 0)/1e3, perEvent(p, 1)/1e3, perEvent(p, 2)/1e3)
	}
	t.Logf("agent RSS after the run %.1f MiB", float64(st.RSS)/(1<<20))
	if *e2eOut != "" {
		var b strings.Builder
		for _, p := range paths {
			for _, r := range p.rates {
				fmt.Fprintf(&b, "BenchmarkEndToEnd/%s-%d %d %.0f ns/op %.0f events/s %.0f process-cpu-ns/op %.0f broker-cpu-ns/op %.0f client-cpu-ns/op",
					p.name, runtime.GOMAXPROCS(0), n, 1e9/r, r, perEvent(p, 0), perEvent(p, 1), perEvent(p, 2))
				if p.proc == proc {
					fmt.Fprintf(&b, " %d rss-bytes", st.RSS)
				}
				b.WriteString("\n")
			}
		}
		if err := os.WriteFile(*e2eOut, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// roundTrips publishes n messages made by payload to pubTopic, with at most e2eWindow of
// them not yet back on subTopic, and returns how many came back per second. Each must come
// back exactly once: by its payload, or by the number id finds in it.
func roundTrips(t *testing.T, url, pubTopic, subTopic string, n int, payload func(int) []byte, id *regexp.Regexp) float64 {
	t.Helper()
	want := map[string]bool{}
	for i := range n {
		p := payload(i)
		if id != nil {
			p = []byte(strconv.Itoa(1_000_000 + i))
		}
		want[string(p)] = true
	}
	var mu sync.Mutex
	var problems []string
	back := make(chan struct{}, n)
	connect := func(name string, onConnect mqtt.OnConnectHandler) mqtt.Client {
		o := mqtt.NewClientOptions().AddBroker(url).SetClientID(name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
			SetCleanSession(true).SetOnConnectHandler(onConnect)
		c := mqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", name, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	subscribed := make(chan error, 1)
	connect("rate-sub", func(c mqtt.Client) {
		tok := c.Subscribe(subTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
			key := string(m.Payload())
			if id != nil {
				if sm := id.FindSubmatch(m.Payload()); sm != nil {
					key = string(sm[1])
				}
			}
			mu.Lock()
			if !want[key] {
				problems = append(problems, fmt.Sprintf("%q (unexpected or a second time)", m.Payload()))
			}
			delete(want, key)
			mu.Unlock()
			back <- struct{}{}
		})
		go func() { tok.Wait(); subscribed <- tok.Error() }()
	})
	if err := <-subscribed; err != nil {
		t.Fatalf("subscribe %s: %v", subTopic, err)
	}
	pub := connect("rate-pub", nil)
	window := make(chan struct{}, e2eWindow)
	start := time.Now()
	go func() {
		for i := range n {
			window <- struct{}{}
			pub.Publish(pubTopic, 1, false, payload(i))
		}
	}()
	for i := range n {
		select {
		case <-back:
			<-window
		case <-time.After(10 * time.Second):
			t.Fatalf("%s → %s: %d of %d came back", pubTopic, subTopic, i, n)
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 || len(want) > 0 {
		t.Fatalf("%s → %s: %d missing, %d wrong: %v", pubTopic, subTopic, len(want), len(problems), problems[:min(len(problems), 5)])
	}
	return rate
}

// retain publishes payload retained to topic on the broker at url.
func retain(t *testing.T, url, topic string, payload []byte) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("rate-retain"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// tryRoundTrip publishes one reading above the threshold and reports whether an alert came
// back within a second.
func tryRoundTrip(t *testing.T, url, in, out string) bool {
	t.Helper()
	got := make(chan struct{}, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("rate-probe"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(out, 1, func(mqtt.Client, mqtt.Message) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", out, tok.Error())
	}
	c.Publish(in, 1, false, []byte(`{"value": 99.5}`)).WaitTimeout(10 * time.Second)
	select {
	case <-got:
		return true
	case <-time.After(time.Second):
		return false
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
