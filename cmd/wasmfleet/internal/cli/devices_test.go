package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// mqttClient connects a test client as user "pi". Its network connection is returned too,
// so that a test can cut it the way a device losing power does (no DISCONNECT: the broker
// publishes the will).
func mqttClient(t *testing.T, mq *testenv.Mosquitto, id string, will []byte) (mqtt.Client, func()) {
	t.Helper()
	var mu sync.Mutex
	var conn net.Conn
	o := mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID(id).SetCleanSession(true).
		SetUsername("pi").SetPassword("pi-pw").SetAutoReconnect(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		})
	if will != nil {
		o.SetBinaryWill(fmt.Sprintf("wasmfleet/devices/%s/status", id), will, 1, true)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, func() { mu.Lock(); conn.Close(); mu.Unlock() }
}

func publishRetained(t *testing.T, c mqtt.Client, id, payload string) {
	t.Helper()
	tok := c.Publish(fmt.Sprintf("wasmfleet/devices/%s/status", id), 1, true, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", id, tok.Error())
	}
}

// TestDevices runs `wasmfleet devices` against a real Mosquitto holding the retained
// statuses of three devices (one of which lost its connection, so that its last will
// replaced its status) and two malformed ones.
func TestDevices(t *testing.T) {
	mq := testenv.StartMosquitto(t, &testenv.MosquittoOptions{Users: map[string]string{"ops": "ops-pw", "pi": "pi-pw"}})
	for k, v := range map[string]string{
		mqttBrokersEnv: "", mqttUserEnv: "", mqttPasswordEnv: "ops-pw", mqttPwFileEnv: "",
		mqttCAEnv: "", mqttCertEnv: "", mqttKeyEnv: "", mqttPrefixEnv: "",
	} {
		t.Setenv(k, v)
	}
	now := time.Now().UTC()
	ts := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339Nano) }
	mod := func(name, version, state, extra string) string {
		return fmt.Sprintf(`{"name":%q,"version":%q,"state":%q%s,"invocations":10,"failures":0,"dropped":0,"p50_us":40,"p99_us":90}`, name, version, state, extra)
	}

	pub, _ := mqttClient(t, mq, "test-publisher", nil)
	publishRetained(t, pub, "pi-1", fmt.Sprintf(`{"device":"pi-1","online":true,"time":%q,"groups":["kitchen"],"modules":[%s]}`,
		ts(10*time.Minute+time.Second), mod("threshold-alert", "1.2.0", "active", "")))
	publishRetained(t, pub, "pi-2", fmt.Sprintf(`{"device":"pi-2","online":true,"time":%q,"groups":["kitchen","eu"],"modules":[%s,%s],"last_error":"threshold-alert 1.3.0: trap: unreachable"}`,
		ts(3*time.Hour+time.Second), mod("threshold-alert", "1.2.0", "downloading", `,"target":"1.3.0"`), mod("counter", "0.1.0", "health-check", "")))
	publishRetained(t, pub, "pi-bad", `{"device":"pi-bad","online":"yes"}`)
	publishRetained(t, pub, "pi-4", `{"device":"pi-1","online":true}`) // another device's topic

	// pi-3 reports, then its connection drops: the broker publishes its will, retained.
	pi3, cut := mqttClient(t, mq, "pi-3", []byte(`{"device":"pi-3","online":false}`))
	publishRetained(t, pi3, "pi-3", fmt.Sprintf(`{"device":"pi-3","online":true,"time":%q,"groups":["eu"]}`, ts(time.Second)))
	willSeen := make(chan struct{})
	var once sync.Once
	pub.Subscribe("wasmfleet/devices/pi-3/status", 1, func(_ mqtt.Client, m mqtt.Message) {
		if string(m.Payload()) == `{"device":"pi-3","online":false}` {
			once.Do(func() { close(willSeen) })
		}
	}).Wait()
	cut()
	select {
	case <-willSeen:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not publish pi-3's will")
	}

	dir := t.TempDir()
	devices := func(args ...string) (string, string) {
		t.Helper()
		args = append([]string{"devices", "--broker", mq.URL(), "--username", "ops", "--idle", "200ms"}, args...)
		code, out, errs := wf(t, dir, args...)
		if code != 0 {
			t.Fatalf("wasmfleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out, errs
	}

	out, errs := devices()
	want := []string{
		"DEVICE ONLINE GROUPS MODULES LAST ERROR AGE",
		"pi-1 yes kitchen threshold-alert@1.2.0 active - 10m",
		"pi-2 yes kitchen,eu threshold-alert@1.2.0 downloading (to 1.3.0), counter@0.1.0 health-check threshold-alert 1.3.0: trap: unreachable 3h",
		"pi-3 lost ? - - -",
	}
	if got := squeeze(out); got != strings.Join(want, "\n") {
		t.Fatalf("devices:\n%s\nwant (spaces squeezed):\n%s", out, strings.Join(want, "\n"))
	}
	if !strings.Contains(errs, "3 devices (2 online) of 3 reporting") || !strings.Contains(errs, "skipped 2 malformed status messages") {
		t.Fatalf("stderr: %s", errs)
	}

	for _, c := range []struct {
		args []string
		want string // device ids, in order
		note string
	}{
		{[]string{"--group", "kitchen"}, "pi-1 pi-2", "1 lost device left no groups"},
		{[]string{"--group", "eu", "--offline"}, "", "1 lost device left no groups"},
		{[]string{"--offline"}, "pi-3", "1 device (0 online) of 3"},
		{[]string{"--module", "threshold-alert"}, "pi-1 pi-2", ""},
		{[]string{"--module", "counter@0.1.0"}, "pi-2", ""},
		{[]string{"--module", "threshold-alert@1.3.0"}, "", "0 devices (0 online) of 3"},
	} {
		out, errs := devices(append(c.args, "--json")...)
		var ds []registry.Device
		if err := json.Unmarshal([]byte(out), &ds); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.Device)
		}
		if strings.Join(ids, " ") != c.want || !strings.Contains(errs, c.note) {
			t.Errorf("%v: %v, stderr %q; want %q and %q", c.args, ids, errs, c.want, c.note)
		}
	}
	out, _ = devices("--offline", "--json")
	if !strings.Contains(out, `"vanished": true`) || !strings.Contains(out, `"online": false`) {
		t.Fatalf("--json of a lost device:\n%s", out)
	}

	// Refusals: a wrong password, no broker, a bad --module, a broker that is not there.
	t.Setenv(mqttPasswordEnv, "wrong")
	if code, _, errs := wf(t, dir, "devices", "--broker", mq.URL(), "--username", "ops"); code != 2 || !strings.HasPrefix(errs, "error: mqtt: connect to "+mq.URL()) {
		t.Fatalf("wrong password: exit %d, %s", code, errs)
	}
	if code, _, errs := wf(t, dir, "devices"); code != 1 || !strings.Contains(errs, "no broker") {
		t.Fatalf("no broker: exit %d, %s", code, errs)
	}
	if code, _, errs := wf(t, dir, "devices", "--broker", mq.URL(), "--module", "m@"); code != 1 || !strings.Contains(errs, "want NAME or NAME@VERSION") {
		t.Fatalf("bad --module: exit %d, %s", code, errs)
	}
	t.Setenv(mqttPasswordEnv, "")
	if code, _, errs := wf(t, dir, "devices", "--broker", "tcp://127.0.0.1:1", "--connect-timeout", "2s"); code != 2 || !strings.HasPrefix(errs, "error: mqtt: connect to tcp://127.0.0.1:1") {
		t.Fatalf("no broker there: exit %d, %s", code, errs)
	}
}

// squeeze trims the output and turns every run of spaces into one.
func squeeze(s string) string {
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
