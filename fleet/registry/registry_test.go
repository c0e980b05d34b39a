package registry

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func clock() func() time.Time { return func() time.Time { return t0 } }

const st = "wasmfleet/devices/%s/status"

// TestHandle feeds one registry a sequence of messages and checks what it holds after each.
func TestHandle(t *testing.T) {
	r := New(report.Topics{}, clock())
	steps := []struct {
		name, topic, payload string
		bad                  string // part of the error, when the message is malformed
		want                 string // the registry afterwards: id online vanished groups modules
	}{
		{name: "first status", topic: fmt.Sprintf(st, "pi-1"),
			payload: `{"device":"pi-1","online":true,"time":"2026-05-01T11:59:00Z","groups":["kitchen"],"modules":[{"name":"m","version":"1.0.0","state":"active","invocations":0,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}]}`,
			want:    "pi-1 true false [kitchen] [m@1.0.0]"},
		{name: "last will keeps what was known", topic: fmt.Sprintf(st, "pi-1"), payload: `{"device":"pi-1","online":false}`,
			want: "pi-1 false true [kitchen] [m@1.0.0]"},
		{name: "will of a device never seen", topic: fmt.Sprintf(st, "pi-2"), payload: `{"device":"pi-2","online":false}`,
			want: "pi-1 false true [kitchen] [m@1.0.0]; pi-2 false true [] []"},
		{name: "back online", topic: fmt.Sprintf(st, "pi-1"), payload: `{"device":"pi-1","online":true,"groups":["eu"]}`,
			want: "pi-1 true false [eu] []; pi-2 false true [] []"},
		{name: "clean shutdown is not a will", topic: fmt.Sprintf(st, "pi-1"), payload: `{"device":"pi-1","online":false,"time":"2026-05-01T11:59:30Z","groups":["eu"]}`,
			want: "pi-1 false false [eu] []; pi-2 false true [] []"},
		{name: "retained status cleared", topic: fmt.Sprintf(st, "pi-2"), payload: ``,
			want: "pi-1 false false [eu] []"},
		{name: "not JSON", topic: fmt.Sprintf(st, "pi-3"), payload: `online`, bad: "not a valid message",
			want: "pi-1 false false [eu] []"},
		{name: "unknown field", topic: fmt.Sprintf(st, "pi-3"), payload: `{"device":"pi-3","online":true,"root":true}`, bad: "unknown field",
			want: "pi-1 false false [eu] []"},
		{name: "module without state", topic: fmt.Sprintf(st, "pi-3"), payload: `{"device":"pi-3","modules":[{"name":"m"}]}`, bad: "name and state are required",
			want: "pi-1 false false [eu] []"},
		{name: "another device's topic", topic: fmt.Sprintf(st, "pi-1"), payload: `{"device":"pi-3","online":true}`, bad: `status of device "pi-3" on the topic of "pi-1"`,
			want: "pi-1 false false [eu] []"},
		{name: "events topic", topic: "wasmfleet/devices/pi-3/events", payload: `{"device":"pi-3","online":true}`, bad: "not a device status topic",
			want: "pi-1 false false [eu] []"},
		{name: "other prefix", topic: "other/devices/pi-3/status", payload: `{"device":"pi-3","online":true}`, bad: "not a device status topic",
			want: "pi-1 false false [eu] []"},
	}
	for i, s := range steps {
		err := r.Handle(s.topic, []byte(s.payload))
		if s.bad == "" && err != nil || s.bad != "" && (err == nil || !strings.Contains(err.Error(), s.bad)) {
			t.Fatalf("step %d (%s): error %v, want %q", i, s.name, err, s.bad)
		}
		if got := dump(r.Devices(Filter{})); got != s.want {
			t.Fatalf("step %d (%s): registry\n  %s\nwant\n  %s", i, s.name, got, s.want)
		}
	}
	stats := r.Stats()
	if stats.Messages != uint64(len(steps)) || stats.Malformed != 6 || !strings.Contains(stats.LastMalformed.Error(), "not a device status topic") {
		t.Fatalf("stats = %+v", stats)
	}
	if d, ok := r.Device("pi-1"); !ok || !d.Received.Equal(t0) {
		t.Fatalf("Device(pi-1) = %+v, %v", d, ok)
	}
}

func dump(ds []Device) string {
	var s []string
	for _, d := range ds {
		var mods []string
		for _, m := range d.Modules {
			mods = append(mods, m.Name+"@"+m.Version)
		}
		s = append(s, fmt.Sprintf("%s %v %v %v %v", d.Device, d.Online, d.Vanished, d.Groups, mods))
	}
	return strings.Join(s, "; ")
}

func TestFilter(t *testing.T) {
	r := New(report.Topics{Prefix: "acme"}, clock())
	for _, p := range []string{
		`{"device":"a","online":true,"groups":["kitchen"],"modules":[{"name":"m","version":"1.0.0","state":"active","invocations":0,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}]}`,
		`{"device":"b","online":true,"groups":["kitchen","eu"],"modules":[{"name":"m","version":"1.1.0","state":"health-check","invocations":0,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}]}`,
		`{"device":"c","online":false,"time":"2026-05-01T10:00:00Z","groups":["eu"]}`,
		`{"device":"d","online":false}`,
	} {
		id := p[len(`{"device":"`):strings.Index(p, `","online"`)]
		if err := r.Handle("acme/devices/"+id+"/status", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "a b c d"},
		{Filter{Group: "kitchen"}, "a b"},
		{Filter{Group: "eu", Offline: true}, "c"},
		{Filter{Offline: true}, "c d"},
		{Filter{Module: "m"}, "a b"},
		{Filter{Module: "m", Version: "1.1.0"}, "b"},
		{Filter{Module: "m", Version: "2.0.0"}, ""},
		{Filter{Group: "nowhere"}, ""},
	} {
		var ids []string
		for _, d := range r.Devices(c.f) {
			ids = append(ids, d.Device)
		}
		if got := strings.Join(ids, " "); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
	if d, _ := r.Device("d"); !d.GroupsUnknown() {
		t.Error("d's groups should be unknown")
	}
	if d, _ := r.Device("c"); d.GroupsUnknown() {
		t.Error("c's groups are known")
	}
}

func TestParseModule(t *testing.T) {
	for in, want := range map[string]string{
		"m": "m|", "m@1.2.0": "m|1.2.0", "m@": "error", "@1.0.0": "error", "": "error", "m@1@2": "error",
	} {
		n, v, err := ParseModule(in)
		got := n + "|" + v
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("ParseModule(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestCollect fills a registry from the retained statuses of a real Mosquitto: every
// device is there when Collect returns, and it returns soon after the burst.
func TestCollect(t *testing.T) {
	mq := testenv.StartMosquitto(t, nil)
	pub := connect(t, mq.URL(), "publisher")
	const n = 300
	for i := range n {
		id := fmt.Sprintf("pi-%03d", i)
		tok := pub.Publish(fmt.Sprintf(st, id), 1, true, fmt.Sprintf(`{"device":%q,"online":true,"groups":["g%d"]}`, id, i%3))
		tok.Wait()
		if tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	pub.Publish(fmt.Sprintf(st, "junk"), 1, true, "{").Wait()

	c := connect(t, mq.URL(), "collector")
	r := New(report.Topics{}, nil)
	start := time.Now()
	stats, err := Collect(context.Background(), c, r, CollectOptions{Idle: 200 * time.Millisecond, Max: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); !stats.Complete || stats.Messages != n+1 || r.Len() != n || took > 3*time.Second {
		t.Fatalf("collect: %+v, %d devices, took %s", stats, r.Len(), took)
	}
	if got := len(r.Devices(Filter{Group: "g1"})); got != n/3 {
		t.Fatalf("group g1: %d devices", got)
	}
	if r.Stats().Malformed != 1 {
		t.Fatalf("stats = %+v", r.Stats())
	}

	// Max cuts a collection that never goes quiet.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				pub.Publish(fmt.Sprintf(st, "chatty"), 0, false, fmt.Sprintf(`{"device":"chatty","online":true,"outbox":%d}`, i))
			}
		}
	}()
	stats, err = Collect(context.Background(), c, New(report.Topics{}, nil), CollectOptions{Idle: 200 * time.Millisecond, Max: time.Second})
	if err != nil || stats.Complete {
		t.Fatalf("chatty collect: %+v, %v", stats, err)
	}
}

func connect(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// A registry keeps the latest status of each device; the broker's last will marks a device
// lost but keeps what was known of it.
func ExampleRegistry() {
	r := New(report.Topics{}, nil)
	r.Handle("wasmfleet/devices/pi-1/status", []byte(`{"device":"pi-1","online":true,"groups":["kitchen"]}`))
	r.Handle("wasmfleet/devices/pi-2/status", []byte(`{"device":"pi-2","online":true,"groups":["garage"]}`))
	r.Handle("wasmfleet/devices/pi-1/status", []byte(`{"device":"pi-1","online":false}`)) // its last will
	r.Handle("wasmfleet/devices/pi-3/status", []byte(`not a status`))

	for _, d := range r.Devices(Filter{Offline: true}) {
		fmt.Println(d.Device, d.Groups, "online:", d.Online, "vanished:", d.Vanished)
	}
	fmt.Println("malformed:", r.Stats().Malformed)
	// Output:
	// pi-1 [kitchen] online: false vanished: true
	// malformed: 1
}
