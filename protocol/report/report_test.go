package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var goodStatus = `{"device":"pi-1","online":true,"time":"2026-11-26T10:00:00Z","agent_version":"0.1.0","arch":"armv7",` +
	`"groups":["kitchen"],"applied":{"group/kitchen":7},"modules":[{"name":"threshold-alert","version":"1.2.0","state":"active",` +
	`"invocations":10,"failures":1,"failures_by":{"trap":1},"dropped":0,"p50_us":120,"p99_us":900}]}`

func TestStatusRoundTrip(t *testing.T) {
	s, err := ParseStatus([]byte(goodStatus))
	if err != nil {
		t.Fatal(err)
	}
	if s.Device != "pi-1" || !s.Online || s.Applied["group/kitchen"] != 7 || s.Modules[0].FailuresBy["trap"] != 1 {
		t.Fatalf("parsed %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(s2)
	if string(b) != string(b2) {
		t.Fatalf("round trip changed it:\n%s\n%s", b, b2)
	}
	// The last will is a valid status.
	if s, err := ParseStatus([]byte(`{"device":"pi-1","online":false}`)); err != nil || s.Online {
		t.Fatalf("will: %+v, %v", s, err)
	}
}

func TestMalformedMessages(t *testing.T) {
	for _, c := range []struct {
		name, data, want string
		event            bool
	}{
		{"empty", ``, "not a valid message", false},
		{"not json", `hello`, "not a valid message", false},
		{"array", `[]`, "not a valid message", false},
		{"unknown field", `{"device":"pi-1","online":true,"root":true}`, "unknown field", false},
		{"trailing", `{"device":"pi-1"}{}`, "data after", false},
		{"no device", `{"online":true}`, "device", false},
		{"bad device", `{"device":"a/b"}`, "device", false},
		{"wildcard device", `{"device":"+"}`, "device", false},
		{"module without state", `{"device":"pi-1","modules":[{"name":"x","version":"1.0.0"}]}`, "modules[0]", false},
		{"wrong type", `{"device":"pi-1","online":"yes"}`, "not a valid message", false},
		{"huge", `{"device":"` + strings.Repeat("a", MaxMessageSize) + `"}`, "more than", false},
		{"event kind", `{"device":"pi-1","time":"2026-11-26T10:00:00Z","kind":"exploded"}`, "kind", true},
		{"event no device", `{"time":"2026-11-26T10:00:00Z","kind":"failed"}`, "device", true},
		{"event bad time", `{"device":"pi-1","time":"yesterday","kind":"failed"}`, "not a valid message", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.event {
				_, err = ParseEvent([]byte(c.data))
			} else {
				_, err = ParseStatus([]byte(c.data))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestEvent(t *testing.T) {
	e := Event{Device: "pi-1", Time: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Kind: EventRolledBack,
		Module: "m", Version: "1.3.0", Reason: "7 of 10 events failed (trap)", ErrorKind: "trap"}
	b, _ := json.Marshal(e)
	got, err := ParseEvent(b)
	if err != nil || *got != e {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestTopics(t *testing.T) {
	var def Topics
	if got := def.Status("pi-1"); got != "wasmfleet/devices/pi-1/status" {
		t.Fatal(got)
	}
	tp := Topics{Prefix: "acme/wf"}
	for _, c := range []struct{ got, want string }{
		{tp.GroupDesired("kitchen"), "acme/wf/groups/kitchen/desired"},
		{tp.DeviceDesired("pi-1"), "acme/wf/devices/pi-1/desired"},
		{tp.Events("pi-1"), "acme/wf/devices/pi-1/events"},
		{tp.AllStatus(), "acme/wf/devices/+/status"},
		{tp.AllEvents(), "acme/wf/devices/+/events"},
	} {
		if c.got != c.want {
			t.Errorf("%s, want %s", c.got, c.want)
		}
	}
	for name, want := range map[string]string{
		"acme/wf/devices/pi-1/status": "pi-1", "acme/wf/devices/pi-1/events": "pi-1",
		"acme/wf/devices/pi-1/desired": "", "wasmfleet/devices/pi-1/status": "", "acme/wf/devices/pi-1": "",
	} {
		id, ok := tp.DeviceOf(name)
		if id != want || ok != (want != "") {
			t.Errorf("DeviceOf(%q) = %q, %v", name, id, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodStatus))
	f.Add([]byte(`{"device":"pi-1","online":false}`))
	f.Add([]byte(`{"device":"pi-1","time":"2026-11-26T10:00:00Z","kind":"failed","reason":"x"}`))
	f.Add([]byte(`{"device":"pi-1","modules":[{"name":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, err := ParseStatus(data); err == nil {
			if _, err := json.Marshal(s); err != nil {
				t.Fatal(err)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
		if _, err := ParseEvent(data); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
