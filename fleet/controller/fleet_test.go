package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// TestFleet: a Feed with a Fleet hands it what the Tracker accepted: statuses into its
// registry (a last will marks the device vanished, a cleared status forgets it), every kind
// of update event into the device's history (the Tracker keeps only some), and each report
// to the listeners; malformed messages reach neither.
func TestFleet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fl := NewFleet(report.Topics{}, func() time.Time { return now })
	f := NewFeed(report.Topics{}, rollout.NewTracker(nil))
	f.fleet = fl
	var mu sync.Mutex
	var heard []string
	stop := fl.Listen(func(r Report) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Cleared:
			heard = append(heard, r.Device+" cleared")
		case r.Status != nil:
			heard = append(heard, fmt.Sprintf("%s status online=%t", r.Device, r.Status.Online))
		case r.Event != nil:
			heard = append(heard, r.Device+" "+r.Event.Kind)
		}
		if !r.Received.Equal(now) {
			t.Errorf("received %v", r.Received)
		}
	})
	handle := func(topic, payload string) {
		t.Helper()
		_ = f.Handle(topic, []byte(payload))
	}
	handle("wasmfleet/devices/pi-1/status", `{"device":"pi-1","online":true,"groups":["g"],"modules":[{"name":"m","version":"1.0.0","state":"active","invocations":3,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}]}`)
	handle("wasmfleet/devices/pi-1/events", `{"device":"pi-1","time":"2026-11-25T12:00:00Z","kind":"downloading","module":"m","version":"1.1.0"}`)
	handle("wasmfleet/devices/pi-1/events", `{"device":"pi-1","time":"2026-11-25T12:00:01Z","kind":"verified","module":"m","version":"1.1.0"}`)
	handle("wasmfleet/devices/pi-1/events", `{"device":"pi-1","time":"2026-11-25T12:00:02Z","kind":"activated","module":"m","version":"1.1.0"}`)
	handle("wasmfleet/devices/pi-2/status", `{"device":"pi-1","online":true}`) // spoofed: dropped
	handle("wasmfleet/devices/pi-2/events", `{"device":"pi-2","time":"2026-11-25T12:00:00Z","kind":"exploded"}`)
	handle("wasmfleet/devices/pi-1/status", `{"device":"pi-1","online":false}`) // its last will

	d, ok := fl.Registry().Device("pi-1")
	if !ok || d.Online || !d.Vanished || !d.Runs("m", "1.0.0") || !d.Received.Equal(now) {
		t.Fatalf("pi-1 after its will: %+v", d)
	}
	if fl.Registry().Len() != 1 {
		t.Fatalf("%d devices", fl.Registry().Len())
	}
	h := fl.History("pi-1")
	if len(h) != 3 || h[0].Kind != report.EventDownloading || h[2].Kind != report.EventActivated {
		t.Fatalf("history %+v", h)
	}
	handle("wasmfleet/devices/pi-1/status", "")
	if _, ok := fl.Registry().Device("pi-1"); ok || len(fl.History("pi-1")) != 0 {
		t.Fatal("a cleared status did not forget the device")
	}
	stop()
	handle("wasmfleet/devices/pi-3/status", `{"device":"pi-3","online":true}`)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"pi-1 status online=true", "pi-1 downloading", "pi-1 verified", "pi-1 activated", "pi-1 status online=false", "pi-1 cleared"}
	if fmt.Sprint(heard) != fmt.Sprint(want) {
		t.Fatalf("listener heard %q, want %q", heard, want)
	}
	if _, ok := fl.Registry().Device("pi-3"); !ok {
		t.Fatal("pi-3 not registered")
	}
}

// TestFleetHistoryBounds: MaxHistory events per device, the newest; copies handed out do
// not change afterwards.
func TestFleetHistoryBounds(t *testing.T) {
	fl := NewFleet(report.Topics{}, nil)
	for i := range MaxHistory + 5 {
		fl.event("pi-1", &report.Event{Device: "pi-1", Kind: report.EventDownloading, Version: fmt.Sprintf("1.%d.0", i)})
	}
	h := fl.History("pi-1")
	if len(h) != MaxHistory || h[0].Version != "1.5.0" || h[MaxHistory-1].Version != fmt.Sprintf("1.%d.0", MaxHistory+4) {
		t.Fatalf("%d events, first %s", len(h), h[0].Version)
	}
	fl.event("pi-1", &report.Event{Device: "pi-1", Kind: report.EventHealthy, Version: "9.9.9"})
	if h[0].Version != "1.5.0" || h[MaxHistory-1].Kind != report.EventDownloading {
		t.Fatal("a copy handed out changed")
	}
}

// TestServerFleet: the Server's Feed feeds its Fleet.
func TestServerFleet(t *testing.T) {
	k := newTestKeys(t, 1, 1)
	srv, err := New(Config{Store: nopStore{}, MQTT: MQTTConfig{Brokers: []string{"tcp://127.0.0.1:1"}}, Signers: []signature.Signer{k.rollout[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Feed().Handle("wasmfleet/devices/pi-1/status", []byte(`{"device":"pi-1","online":true,"groups":["g"]}`)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Fleet().Registry().Devices(registry.Filter{Group: "g"}); len(got) != 1 || len(srv.Tracker().Devices("g")) != 1 {
		t.Fatalf("registry %v", got)
	}
	if srv.Store() == nil || srv.Topics() != (report.Topics{}) {
		t.Fatal("accessors")
	}
}

// nopStore holds nothing; the Server is never run.
type nopStore struct{}

func (nopStore) Get(context.Context, string) ([]byte, string, error) {
	return nil, "", rollout.ErrNotFound
}
func (nopStore) Put(context.Context, string, []byte, string) (string, error) {
	return "", rollout.ErrConflict
}
func (nopStore) List(context.Context, string) ([]string, error) { return nil, nil }
