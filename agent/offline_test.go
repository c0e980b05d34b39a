package agent

import (
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// tickerWAT publishes "tick" to the topic ticks on every event.
const tickerWAT = `(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "ticks")
  (data (i32.const 32) "tick")
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (drop (call $publish (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 4)))
    (i32.const 0)))`

const tickerManifest = `name: ticker
version: 1.0.0
abi: handler/v1
triggers: [{every: 100ms}]
capabilities: {publish: [ticks]}
`

// TestOfflineKeepsRunning stops the broker under a running agent: its interval trigger keeps
// firing, publishes wait in the outbox up to its bound and the rest are dropped and counted,
// and once the broker is back the agent reconnects on its own and delivers what it kept.
func TestOfflineKeepsRunning(t *testing.T) {
	f := newFleet(t)
	ref := f.publishRelease(tickerManifest, watModule(t, tickerWAT))
	f.publishDesired(f.desiredDoc("hall", everyone(ref, "r1")))
	cfg := f.agentConfig("pi-off", "hall")
	cfg.Outbox.MaxMessages = 5
	a, _ := f.startAgent(cfg)
	f.waitEvent("pi-off", report.EventActivated, "1.0.0")
	waitFor(t, 10*time.Second, func() bool { return len(f.messages("ticks")) >= 2 }, func() string { return "ticks" })

	f.mq.Stop()
	waitFor(t, 10*time.Second, func() bool { return !a.sess.isConnected() }, func() string { return "the agent to notice" })
	before := moduleInvocations(a, "ticker")
	waitFor(t, 10*time.Second, func() bool { return a.Status().OutboxDropped > 0 },
		func() string { return "the outbox to fill and drop" })
	s := a.Status()
	if moduleInvocations(a, "ticker") <= before || s.Outbox != 5 {
		t.Fatalf("offline: invocations %d -> %d, outbox %d (want the trigger firing and the outbox at its bound of 5)",
			before, moduleInvocations(a, "ticker"), s.Outbox)
	}
	received := len(f.messages("ticks"))

	f.mq.Start()
	// The outbox's 5 kept ticks arrive, then new ones.
	waitFor(t, 20*time.Second, func() bool { return len(f.messages("ticks")) >= received+6 },
		func() string { return "the kept ticks after the broker came back" })
	f.waitStatus("pi-off", func(s *report.Status) bool { return s.Online && s.OutboxDropped > 0 }, "online again, drops counted")
}

func moduleInvocations(a *Agent, name string) uint64 {
	m, _ := moduleStatus(ptr(a.Status()), name)
	return m.Invocations
}

func ptr[T any](v T) *T { return &v }
