package agent

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// retainedStatus connects a fresh client and returns the retained status of device.
func retainedStatus(t *testing.T, brokerURL, device string) *report.Status {
	t.Helper()
	got := make(chan []byte, 1)
	o := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("test-retained-reader").SetCleanSession(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("retained reader: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(report.Topics{}.Status(device), 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() {
			select {
			case got <- m.Payload():
			default:
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("retained reader: subscribe: %v", tok.Error())
	}
	select {
	case b := <-got:
		s, err := report.ParseStatus(b)
		if err != nil {
			t.Fatalf("retained status: %v\n%s", err, b)
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no retained status")
		return nil
	}
}

// TestAgentRestartKeepsModules is scenario 6: wasmfleet-agent, run as a process, installs a
// module and handles an event; it is killed (SIGKILL) and started again. It comes back
// with the same module and version active, from its store: no request reaches S3 (a
// proxy in front of versitygw records every one), no download is reported, and events are
// handled again.
func TestAgentRestartKeepsModules(t *testing.T) {
	const device = "pi-6"
	bin := buildAgent(t)
	f := newFleet(t)
	proxy := testenv.StartProxy(t, f.s3.Endpoint())
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	ref := f.publishRelease(manifest, wasm)
	f.publishDesired(f.desiredDoc("kitchen", everyone(ref, "r1")))
	mkey, _ := objects.ModuleKey(ref.Name, ref.Version)
	rkey, _ := objects.ReleaseKey(ref.Name, ref.Version)

	cfg := f.agentConfig(device, "kitchen")
	cfg.S3.Endpoint = proxy.Addr()
	config := writeAgentYAML(t, cfg)

	first := f.startAgentProcess(bin, config, "agent (first run)")
	isActive := func(s *report.Status) bool {
		m, ok := moduleStatus(s, "threshold-alert")
		return ok && s.Online && m.State == report.StateActive && m.Version == "1.0.0" && m.SHA256 == ref.SHA256
	}
	f.waitEvent(device, report.EventActivated, "1.0.0")
	f.waitStatus(device, isActive, "threshold-alert 1.0.0 active")
	alerts := "alerts/" + device + "/temperature"
	f.publishRaw("sensors/"+device+"/temperature", []byte(`{"value": 31.5}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages(alerts)) == 1 }, func() string { return "an alert" })
	if b, n := proxy.BytesFor(mkey); n != 1 || b < int64(len(wasm)) {
		t.Fatalf("first run: %d module requests, %d bytes; requests %v", n, b, proxy.Requests())
	}

	first.Kill()
	killedAt := time.Now()
	requestsBefore := len(proxy.Requests())
	eventsBefore := len(f.events(device))
	// The broker publishes the last will: the device is offline.
	f.waitStatus(device, func(s *report.Status) bool { return !s.Online }, "offline (the last will)")
	statusesBefore := len(f.messages(report.Topics{}.Status(device)))

	second := f.startAgentProcess(bin, config, "agent (second run)")
	startedAt := time.Now()
	var back *report.Status
	waitFor(t, 30*time.Second, func() bool {
		for _, b := range f.messages(report.Topics{}.Status(device))[statusesBefore:] {
			s, err := report.ParseStatus(b)
			if err == nil && isActive(s) {
				back = s
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("an online status with the module active after the restart; last %+v", f.lastStatus(device))
	})
	backAfter := time.Since(startedAt)

	f.publishRaw("sensors/"+device+"/temperature", []byte(`{"value": 33}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages(alerts)) == 2 },
		func() string { return fmt.Sprintf("an alert after the restart; alerts %q", f.messages(alerts)) })
	var a alert
	if err := json.Unmarshal(f.messages(alerts)[1], &a); err != nil || a.Value != 33 || a.Device != device {
		t.Fatalf("alert after the restart: %+v, %v", a, err)
	}
	handled := f.waitStatus(device, func(s *report.Status) bool {
		m, _ := moduleStatus(s, "threshold-alert")
		return isActive(s) && m.Invocations >= 1
	}, "the event counted after the restart")
	if !second.Running() {
		t.Fatalf("the second agent exited: %v", second.Err())
	}

	if rs := retainedStatus(t, f.mq.URL(), device); !isActive(rs) {
		t.Fatalf("retained status after the restart: %+v", rs)
	}
	if after := proxy.Requests()[requestsBefore:]; len(after) > 0 {
		t.Fatalf("the restarted agent sent %d requests to S3: %v", len(after), after)
	}
	for _, e := range f.events(device)[eventsBefore:] {
		if e.Kind == report.EventDownloading || e.Kind == report.EventActivated || e.Kind == report.EventFailed {
			t.Fatalf("after the restart the agent reported %+v: it should run what it had", e)
		}
	}
	if !strings.Contains(second.Output(), `"message":"module restored"`) {
		t.Errorf("the second run did not log \"module restored\"")
	}
	m, _ := moduleStatus(handled, "threshold-alert")
	relBytes, _ := proxy.BytesFor(rkey)
	modBytes, _ := proxy.BytesFor(mkey)
	t.Logf("first run fetched %d requests (release %d bytes, module %d bytes for %d); after the SIGKILL: "+
		"restarted %v after the kill, module active in the status %v after start, applied %v, %d invocations, "+
		"0 S3 requests",
		requestsBefore, relBytes, modBytes, len(wasm), startedAt.Sub(killedAt).Round(time.Millisecond),
		backAfter.Round(time.Millisecond), back.Applied, m.Invocations)
}
