package agent

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// TestOverload sends a wasmfleet-agent process events at ten times what its handler can take (a 12 ms handler, one worker, the default queue of 64) for 3 seconds (-overload;
// make soak: 60 s). The agent
// keeps what it can, drops the rest and counts the drops in its status (handled + dropped =
// sent; outputs that arrive + outputs dropped from the outbox = handled); its resident memory stays within a few MiB of the quiet figure; and once the
// backlog is gone, the end-to-end latency of a quiet trickle of events (publish to output,
// through the broker both ways) is what it was before.
//
// The overload is published at QoS 0, as high-rate telemetry is: the test's Mosquitto saves
// its database after every change (for the tests that kill it), which holds QoS 1 to some
// 260 messages a second here, so that the broker, not the agent, would be overloaded.
func TestOverload(t *testing.T) {
	const device, group, module = "pi-over", "over", "slow-echo"
	overloadFor := *overloadFlag
	bin := buildAgent(t)
	f := newFleet(t)
	ref := f.publishRelease(slowEchoManifest, watModule(t, strings.Replace(slowEchoWAT, "SPIN", strconv.Itoa(13_000_000), 1)))
	f.publishDesired(f.desiredDoc(group, everyone(ref, "r1")))
	cfg := f.agentConfig(device, group)
	cfg.Metrics.Listen = freeAddr(t)
	proc := f.startAgentProcess(bin, writeAgentYAML(t, cfg), "agent")
	f.waitEvent(device, report.EventActivated, "1.0.0")
	obs := newObserver(t, f.mq.URL(), "test-observer-"+device, "out/"+device)
	in := "in/" + device

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(f.mq.URL()).SetClientID("test-overload").SetCleanSession(true))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	sent := 0
	// trickle sends n events every gap, each stamped with its send time, and returns the
	// end-to-end latency of each (publish to the agent's output reaching the observer).
	trickle := func(what string, n int, gap time.Duration) durations {
		t.Helper()
		from := len(obs.payloads())
		start := sent
		for i := range n {
			tok := pub.Publish(in, 1, false, fmt.Sprintf("q-%d-%d", start+i, time.Now().UnixNano()))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			sent++
			time.Sleep(gap) // the spacing of a quiet stream, not a wait for a condition
		}
		var lat durations
		waitFor(t, 30*time.Second, func() bool {
			lat = nil
			payloads, at := obs.arrivals(from)
			for i, p := range payloads {
				if f := strings.Split(p, "-"); len(f) == 3 && f[0] == "q" {
					ns, _ := strconv.ParseInt(f[2], 10, 64)
					lat = append(lat, at[i].Sub(time.Unix(0, ns)))
				}
			}
			return len(lat) >= n
		}, func() string {
			st := f.lastStatus(device)
			return fmt.Sprintf("%d outputs of the %s trickle; got %d; status %+v", n, what, len(lat), st)
		})
		return lat
	}

	smp := startSampler(proc, cfg.Metrics.Listen, 100*time.Millisecond)
	quietFrom := time.Now()
	before := trickle("first", 20, 50*time.Millisecond)
	quietTo := time.Now()
	// What the handler can take: 40 events at once (fewer than the queue holds), from the
	// first output to the last.
	from := len(obs.payloads())
	for i := range 40 {
		if tok := pub.Publish(in, 1, false, fmt.Sprintf("c-%d", i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		sent++
	}
	waitFor(t, 30*time.Second, func() bool { return len(obs.payloads())-from >= 40 }, func() string { return "the calibration outputs" })
	_, at := obs.arrivals(from)
	capacity := int(float64(len(at)-1) / at[len(at)-1].Sub(at[0]).Seconds())
	rate := 10 * capacity
	const calm = 60 // events of the first trickle and the calibration

	// The overload: rate events a second, sent every millisecond or so, as many as are due.
	overFrom := time.Now()
	overStart := sent
	var last mqtt.Token
	for elapsed := time.Duration(0); elapsed < overloadFor; elapsed = time.Since(overFrom) {
		for due := overStart + int(elapsed*time.Duration(rate)/time.Second); sent < due; sent++ {
			last = pub.Publish(in, 0, false, fmt.Sprintf("o-%d", sent))
		}
		time.Sleep(time.Millisecond) // the pace of the load, not a wait for a condition
	}
	if !last.WaitTimeout(30*time.Second) || last.Error() != nil {
		t.Fatalf("overload publish: %v", last.Error())
	}
	overTo := time.Now()
	overSent := sent - calm

	// The backlog drains: handled + dropped reaches every event sent, in the status, and
	// the output of every handled event has arrived or was dropped from the outbox,
	// counted (the broker, saving every change, can fall behind the outputs).
	s := f.waitStatus(device, func(s *report.Status) bool {
		m, _ := moduleStatus(s, module)
		return int(m.Invocations+m.Dropped) >= sent && s.Outbox == 0 &&
			uint64(len(obs.payloads()))+s.OutboxDropped >= m.Invocations
	}, fmt.Sprintf("handled + dropped = %d events sent, every output in or counted as dropped", sent))
	drained := time.Since(overTo)
	m, _ := moduleStatus(s, module)
	after := trickle("last", 20, 50*time.Millisecond)
	samples := smp.halt(t)
	if !proc.Running() {
		t.Fatalf("the agent exited: %v", proc.Err())
	}

	sentRate := float64(overSent) / overTo.Sub(overFrom).Seconds()
	handledRate := float64(m.Invocations-calm) / overTo.Add(drained).Sub(overFrom).Seconds()
	quiet := peak(between(samples, quietFrom, quietTo), rssOf)
	over := peak(between(samples, overFrom, overTo.Add(drained)), rssOf)
	mid := between(samples, overFrom.Add(overloadFor/2), overTo)
	lastHalf := peak(mid, rssOf)
	t.Logf("handler p50 %dµs, capacity %d/s (40 events at once); overload %d/s for %v: %d events sent (%.0f/s), %d handled (%.0f/s), %d dropped (%.0f%%), %d outputs dropped from the outbox; drained %v after; "+
		"RSS quiet %s, peak under overload %s (second half %s); end-to-end latency before %v, after %v",
		m.P50Micros, capacity, rate, overloadFor, overSent, sentRate, m.Invocations-calm, handledRate, m.Dropped, 100*float64(m.Dropped)/float64(overSent), s.OutboxDropped,
		drained.Round(time.Millisecond), quiet, over, lastHalf, before, after)
	if m.Dropped == 0 || int(m.Invocations+m.Dropped) != sent-20 {
		t.Errorf("%d sent, %d handled + %d dropped: every event must be handled or counted as dropped", sent-20, m.Invocations, m.Dropped)
	}
	if sentRate < 5*handledRate {
		t.Errorf("sent %.0f/s while the agent handled %.0f/s: not an overload", sentRate, handledRate)
	}
	if m.Failures != 0 {
		t.Errorf("%d events failed under overload", m.Failures)
	}
	const allowance = 16 << 20
	if over.rss > quiet.rss+allowance {
		t.Errorf("RSS under overload %s, more than 16 MiB over the quiet %s: memory is not bounded by the queue", over, quiet)
	}
	if b, a := before.median(), after.median(); a > 2*b+20*time.Millisecond {
		t.Errorf("median end-to-end latency after the overload %v, before %v: not back to normal", a, b)
	}
}
