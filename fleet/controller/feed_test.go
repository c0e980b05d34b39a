package controller

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// TestFeedHandle: what reaches the Tracker, and what is counted as malformed instead.
func TestFeedHandle(t *testing.T) {
	tr := rollout.NewTracker(nil)
	f := NewFeed(report.Topics{}, tr)
	ok := func(topic, payload string) {
		t.Helper()
		if err := f.Handle(topic, []byte(payload)); err != nil {
			t.Fatalf("%s %s: %v", topic, payload, err)
		}
	}
	bad := func(topic, payload, want string) {
		t.Helper()
		if err := f.Handle(topic, []byte(payload)); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s %s: %v, want %q", topic, payload, err, want)
		}
	}
	ok("wasmfleet/devices/pi-1/status", `{"device":"pi-1","online":true,"groups":["g"],"modules":[{"name":"m","version":"1.0.0","state":"active","invocations":0,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}]}`)
	ok("wasmfleet/devices/pi-2/status", `{"device":"pi-2","online":true,"groups":["g","h"]}`)
	ok("wasmfleet/devices/pi-1/events", `{"device":"pi-1","time":"2026-11-25T12:00:00Z","kind":"healthy","module":"m","version":"1.0.0","rollout":"r1"}`)
	ok("wasmfleet/devices/pi-1/events", `{"device":"pi-1","time":"2026-11-25T12:00:00Z","kind":"downloading","module":"m","version":"1.0.0"}`)
	bad("wasmfleet/devices/pi-3/status", `{"device":"pi-1","online":true}`, "not about it")
	bad("wasmfleet/devices/pi-3/status", `{"device":"pi-3","online":true,"extra":1}`, "unknown field")
	bad("wasmfleet/devices/pi-3/events", `{"device":"pi-3","time":"2026-11-25T12:00:00Z","kind":"exploded"}`, "kind")
	bad("wasmfleet/devices/pi-3/events", `{"device":"pi-1","time":"2026-11-25T12:00:00Z","kind":"healthy"}`, "not about it")
	bad("wasmfleet/groups/g/desired", `{}`, "not a device status or events topic")
	bad("wasmfleet/devices/../status", `{}`, "not a device status or events topic")

	devs := tr.Devices("g")
	if len(devs) != 2 || len(tr.Devices("h")) != 1 {
		t.Fatalf("devices of g: %+v", devs)
	}
	for _, d := range devs {
		if d.ID == "pi-1" && (len(d.Events) != 1 || d.Events[0].Kind != report.EventHealthy) {
			t.Fatalf("pi-1 events: %+v (only the kinds a verdict reads are kept)", d.Events)
		}
	}
	ok("wasmfleet/devices/pi-2/status", "") // cleared
	if len(tr.Devices("g")) != 1 || len(tr.Devices("h")) != 0 {
		t.Fatalf("a cleared status did not forget the device: %+v", tr.Devices("g"))
	}
	st := f.Stats()
	if st.Statuses != 5 || st.Events != 4 || st.Malformed != 6 || st.LastMalformed == nil {
		t.Fatalf("stats %+v", st)
	}
}

// TestMQTT runs the Publisher, the Feed and CurrentDesired against a real Mosquitto.
func TestMQTT(t *testing.T) {
	mq := testenv.StartMosquitto(t, nil)
	ctx := context.Background()
	k := newTestKeys(t, 1, 1)
	topics := report.Topics{}
	tr := rollout.NewTracker(nil)
	feed := NewFeed(topics, tr)
	subscribed := make(chan error, 1)
	c, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}}, zerolog.Nop(), func(c mqtt.Client) {
		subscribed <- feed.Subscribe(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	if err := <-subscribed; err != nil {
		t.Fatal(err)
	}
	pub := &Publisher{Client: c}

	t.Run("NoDesiredState", func(t *testing.T) {
		_, err := CurrentDesired(ctx, c, topics, "g", &signing.Verifier{Trust: k.trust}, 300*time.Millisecond)
		if !errors.Is(err, ErrNoDesired) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("PublishAndReadBack", func(t *testing.T) {
		d := &signing.Desired{Target: signing.Target{Group: "g"}, Sequence: 7, Expires: time.Now().Add(time.Hour),
			Modules: []signing.ModuleTarget{{Release: testRef("1.0.0"), Rollout: "r1", WavePercent: 100}}}
		env, err := signing.SignDesired(ctx, d, k.rollout[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishRetained(ctx, topics.GroupDesired("g"), env); err != nil {
			t.Fatal(err)
		}
		if n, b := pub.Published(); n != 1 || b != uint64(len(env)) {
			t.Fatalf("published %d messages, %d bytes", n, b)
		}
		got, err := CurrentDesired(ctx, c, topics, "g", &signing.Verifier{Trust: k.trust}, 5*time.Second)
		if err != nil || got.Sequence != 7 || got.Modules[0].Release.Version != "1.0.0" {
			t.Fatalf("read back %+v, %v", got, err)
		}
		// For another group it is not valid.
		if err := pub.PublishRetained(ctx, topics.GroupDesired("h"), env); err != nil {
			t.Fatal(err)
		}
		if _, err := CurrentDesired(ctx, c, topics, "h", &signing.Verifier{Trust: k.trust}, 5*time.Second); !errors.Is(err, signing.ErrWrongTarget) {
			t.Fatalf("a desired state of g on h's topic: %v", err)
		}
		// Signed by a key outside the rollout role: refused.
		env, _ = signing.SignDesired(ctx, &signing.Desired{Target: signing.Target{Group: "x"}, Sequence: 1, Expires: time.Now().Add(time.Hour)}, k.release)
		pub.PublishRetained(ctx, topics.GroupDesired("x"), env)
		if _, err := CurrentDesired(ctx, c, topics, "x", &signing.Verifier{Trust: k.trust}, 5*time.Second); signing.KindOf(err) == nil {
			t.Fatalf("a desired state signed with a release key: %v", err)
		}
	})
	t.Run("FeedAndWaitQuiet", func(t *testing.T) {
		for _, id := range []string{"a", "b", "c"} {
			tok := c.Publish(topics.Status(id), 1, true, []byte(`{"device":"`+id+`","online":true,"groups":["g"]}`))
			tok.Wait()
		}
		// A second subscriber (a restarted controller) gets them all from the retained messages.
		tr2 := rollout.NewTracker(nil)
		feed2 := NewFeed(topics, tr2)
		c2, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}}, zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Disconnect(100)
		if err := feed2.Subscribe(ctx, c2); err != nil {
			t.Fatal(err)
		}
		quiet, err := feed2.WaitQuiet(ctx, 200*time.Millisecond, 5*time.Second)
		if err != nil || !quiet || len(tr2.Devices("g")) != 3 {
			t.Fatalf("quiet %v, %v, devices %d", quiet, err, len(tr2.Devices("g")))
		}
		if len(tr.Devices("g")) != 3 {
			t.Fatalf("the live feed has %d devices", len(tr.Devices("g")))
		}
	})
	t.Run("PublishWhileDisconnected", func(t *testing.T) {
		c3, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}}, zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		c3.Disconnect(100)
		err = (&Publisher{Client: c3}).PublishRetained(ctx, "wasmfleet/groups/g/desired", []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "not connected") {
			t.Fatalf("%v", err)
		}
	})
}

// TestConnect: refused credentials are an error at once; a broker that is not there yet is
// waited for, until it comes or the context ends.
func TestConnect(t *testing.T) {
	mq := testenv.StartMosquitto(t, &testenv.MosquittoOptions{Users: map[string]string{"controller": "pw"}})
	ctx := context.Background()
	start := time.Now()
	_, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}, Username: "controller", Password: "wrong"}, zerolog.Nop(), nil)
	if err == nil || !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("wrong password: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a refused password took %v to report", time.Since(start))
	}
	c, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}, Username: "controller", Password: "pw"}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect(100)

	mq.Stop()
	done := make(chan error, 1)
	var logs lockedBuffer
	go func() {
		c, err := Connect(ctx, MQTTConfig{Brokers: []string{mq.URL()}, Username: "controller", Password: "pw"}, zerolog.New(&logs), nil)
		if err == nil {
			c.Disconnect(100)
		}
		done <- err
	}()
	// Wait, by its log, for a failed attempt and a failed retry; Connect must not return.
	for deadline := time.Now().Add(20 * time.Second); strings.Count(logs.String(), "cannot connect to the broker") < 2; {
		select {
		case err := <-done:
			t.Fatalf("Connect returned %v while the broker was down", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged while the broker was down: %s", logs.String())
		}
	}
	mq.Start()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Connect did not connect once the broker was back")
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	mq.Stop()
	if _, err := Connect(cctx, MQTTConfig{Brokers: []string{mq.URL()}}, zerolog.Nop(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with the broker down until the context ends: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
