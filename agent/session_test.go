package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// TestSessionOutbox sends through a session's outbox to a real Mosquitto. Connected, 2,000
// messages published at once arrive in order, each once, with many in flight at a time.
// When the broker stalls (SIGSTOP) for longer than the session's connect timeout, they
// still arrive once each. When the broker stops mid-stream, what was in flight is sent
// again: every message arrives, in order of first arrival, at most twice. With the broker stopped the outbox holds exactly its bound, messages taken into the
// window included, and drops the rest, counted. Once the broker is back every kept message
// arrives, in order of first arrival, and nothing is left unacknowledged.
func TestSessionOutbox(t *testing.T) {
	const bound = 3000
	mq := testenv.StartMosquitto(t, nil)
	var mu sync.Mutex
	var got []string
	obs := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("outbox-observer").
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			mu.Lock()
			got = append(got, string(m.Payload()))
			mu.Unlock()
		}))
	if tok := obs.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: connect: %v", tok.Error())
	}
	t.Cleanup(func() { obs.Disconnect(100) })
	if tok := obs.Subscribe("out/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: subscribe: %v", tok.Error())
	}
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}

	s := newSession(sessionOptions{Brokers: []string{mq.URL()}, ClientID: "outbox-session",
		KeepAlive: 10 * time.Second, ConnectTimeout: 500 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, OutboxSize: bound},
		zerolog.Nop(), func(in inbound) { in.ack() }, func() {})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 10*time.Second, s.isConnected, func() string { return "the session to connect" })

	msg := func(i int) string { return fmt.Sprintf("m%05d", i) }
	var want []string
	for i := range 2000 {
		s.publish("out/a", []byte(msg(i)), false)
		want = append(want, msg(i))
	}
	waitFor(t, 20*time.Second, func() bool { return len(received()) >= len(want) && s.queued() == 0 },
		func() string { return fmt.Sprintf("2000 messages: %d arrived, %d queued", len(received()), s.queued()) })
	if r := received(); !slices.Equal(r, want) {
		t.Fatalf("connected: %d messages arrived, not the 2000 in order (first difference at %d)", len(r), firstDiff(r, want))
	}
	if s.dropped.Load() != 0 {
		t.Fatalf("connected: %d dropped", s.dropped.Load())
	}

	firstArrivals := func() []string {
		var out []string
		seen := map[string]bool{}
		for _, m := range received() {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
		return out
	}

	copies := func() (most int) {
		n := map[string]int{}
		for _, m := range received() {
			n[m]++
			most = max(most, n[m])
		}
		return most
	}

	// The broker stalls, its connections open, for longer than the session waits for a
	// connection: the publishes in flight are paho's, and arrive once each when it wakes.
	stallFrom := len(want)
	for i := 10000; i < 10200; i++ {
		s.publish("out/a", []byte(msg(i)), false)
		want = append(want, msg(i))
	}
	mq.Pause()
	time.Sleep(2 * time.Second) // the stall itself: four times ConnectTimeout
	mq.Resume()
	waitFor(t, 20*time.Second, func() bool { return len(received()) >= len(want) && s.queued() == 0 },
		func() string {
			return fmt.Sprintf("200 messages after a stall: %d arrived, %d queued", len(received())-stallFrom, s.queued())
		})
	if r := received(); !slices.Equal(r, want) || copies() != 1 {
		t.Fatalf("after a stall: %d arrivals for %d messages, most copies of one %d (want each once, in order)", len(r), len(want), copies())
	}

	// Stopped mid-stream: what was in flight is sent again after the restart, once by paho.
	for i := 2000; i < 4000; i++ {
		s.publish("out/a", []byte(msg(i)), false)
		want = append(want, msg(i))
	}
	waitFor(t, 20*time.Second, func() bool { return len(received()) >= 2700 }, func() string { return "500 of the second 2000" })
	mq.Stop()
	mq.Start()
	waitFor(t, 30*time.Second, func() bool { return len(firstArrivals()) >= len(want) && s.queued() == 0 },
		func() string {
			return fmt.Sprintf("the second 2000 after a restart: %d distinct arrived of %d, %d queued", len(firstArrivals()), len(want), s.queued())
		})
	if r := firstArrivals(); !slices.Equal(r, want) {
		d := firstDiff(r, want)
		t.Fatalf("stopped mid-stream: %d distinct messages, not the %d sent in order (first difference at %d: %v)", len(r), len(want), d, r[max(d-3, 0):min(d+12, len(r))])
	}
	if c := copies(); c > 2 {
		t.Fatalf("stopped mid-stream: a message arrived %d times, want at most twice", c)
	}

	mq.Stop()
	waitFor(t, 10*time.Second, func() bool { return !s.isConnected() }, func() string { return "the session to notice the broker stopped" })
	for i := 4000; i < 4000+bound+500; i++ {
		s.publish("out/a", []byte(msg(i)), false)
	}
	if q, d := s.queued(), s.dropped.Load(); q != bound || d != 500 {
		t.Fatalf("offline: %d queued, %d dropped; want %d and 500", q, d, bound)
	}
	mq.Start()
	for i := 4000; i < 4000+bound; i++ {
		want = append(want, msg(i))
	}
	waitFor(t, 30*time.Second, func() bool { return len(firstArrivals()) >= len(want) && s.queued() == 0 },
		func() string {
			return fmt.Sprintf("the kept messages after the restart: %d distinct arrived of %d, %d queued", len(firstArrivals()), len(want), s.queued())
		})
	if r := firstArrivals(); !slices.Equal(r, want) {
		t.Fatalf("after the restart: %d distinct messages, not the %d kept in order (first difference at %d)", len(r), len(want), firstDiff(r, want))
	}
	if c := copies(); c > 2 {
		t.Fatalf("after the restart: a message arrived %d times, want at most twice", c)
	}
	t.Logf("%d messages arrived in all, %d of them a second time", len(received()), len(received())-len(want))
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
