package agent

import (
	"fmt"
	"testing"
)

// msg is an inbound QoS 1 message whose ack counts into acks[name].
func redeliveryMsg(acks map[string]int, name string, id uint16, payload string, dup bool) inbound {
	return inbound{topic: "t", payload: []byte(payload), qos: 1, id: id, dup: dup, ack: func() { acks[name]++ }}
}

func TestRedeliveries(t *testing.T) {
	acks := map[string]int{}
	r := newRedeliveries()

	// QoS 0 is passed through: its ack is the message's own.
	q0 := redeliveryMsg(acks, "q0", 0, "x", false)
	q0.qos = 0
	r.admit(q0)()
	if acks["q0"] != 1 {
		t.Fatalf("QoS 0 ack: %v", acks)
	}

	// A copy of a held message joins it: nothing is queued, both are acked when it is done.
	done := r.admit(redeliveryMsg(acks, "first", 7, "a", false))
	if done == nil {
		t.Fatal("a new message was taken for a copy")
	}
	if r.admit(redeliveryMsg(acks, "copy", 7, "a", true)) != nil {
		t.Fatal("the broker's copy of a held message would be handled again")
	}
	if acks["first"] != 0 || acks["copy"] != 0 {
		t.Fatalf("acked before handled: %v", acks)
	}
	done()
	if acks["first"] != 1 || acks["copy"] != 1 {
		t.Fatalf("acks after handling: %v, want both once", acks)
	}

	// A copy of a handled message is acked at once and not handled.
	if r.admit(redeliveryMsg(acks, "late", 7, "a", true)) != nil || acks["late"] != 1 {
		t.Fatalf("copy of a handled message: acks %v", acks)
	}
	// Not copies: another payload, another id, or no dup flag (a new message reusing the id).
	for i, m := range []inbound{
		redeliveryMsg(acks, "other-payload", 7, "b", true),
		redeliveryMsg(acks, "other-id", 8, "a", true),
		redeliveryMsg(acks, "reused-id", 7, "a", false),
	} {
		if r.admit(m) == nil {
			t.Errorf("case %d (%s): a new message was taken for a copy", i, m.payload)
		}
	}
	if got := r.skipped.Load(); got != 2 {
		t.Errorf("%d copies counted, want 2", got)
	}

	// Handled messages are remembered up to doneKeep.
	r = newRedeliveries()
	r.admit(redeliveryMsg(acks, "old", 1, "old", false))()
	for i := range doneKeep {
		r.admit(redeliveryMsg(acks, "filler", 2, fmt.Sprint(i), false))()
	}
	if r.admit(redeliveryMsg(acks, "old-copy", 1, "old", true)) == nil {
		t.Error("a copy of a message forgotten long ago was not handled")
	}
	if len(r.done) != doneKeep || len(r.pending) != 1 {
		t.Errorf("%d remembered, %d pending; want %d and 1", len(r.done), len(r.pending), doneKeep)
	}
}
