package agent

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// Why redeliveries exist: the agent acknowledges an MQTT message only once every handler it
// was queued for has finished, so a message can be held (queued or running) when the
// connection drops. paho drops an acknowledgement made after its connection is gone, and
// the broker sends every unacknowledged message again after the reconnection (DUP set, same
// packet id). Without this, each such message ran twice: once from the queue, once as the
// copy; with a backlog, most of the backlog did (85 of 446 events in
// TestBrokerRestartUnderLoad, 50 of 60 in TestBrokerRestartMidStream).

// redeliveries recognises the broker's second copy of a QoS 1 message: dup set, and the same
// packet id, topic and payload as a message the agent holds or has handled.
//
// A copy of a held message is not queued again: its acknowledgement joins the first copy's,
// and both are made when the handlers finish, the copy's on the live connection. A copy of a
// handled message is acknowledged at once (the first acknowledgement was lost with the
// connection or with the broker). A message without dup, or with a key the agent never saw,
// is new. Handled keys are remembered in a ring of doneKeep.
type redeliveries struct {
	mu      sync.Mutex
	pending map[msgKey]*heldMsg
	done    map[msgKey]bool
	ring    [doneKeep]msgKey
	next    int
	skipped atomic.Uint64 // copies recognised and not handled again
}

// doneKeep bounds the handled messages remembered: far more than a broker sends again after
// one reconnection (its in-flight window).
const doneKeep = 1024

type msgKey struct {
	id    uint16
	topic string
	sum   [sha256.Size]byte
}

type heldMsg struct{ acks []func() }

func newRedeliveries() *redeliveries {
	return &redeliveries{pending: map[msgKey]*heldMsg{}, done: map[msgKey]bool{}}
}

// admit registers a message about to be queued. It returns the function that acknowledges
// it once handled, or nil when the message is a copy that must not be handled again (its
// acknowledgement is then taken care of).
func (r *redeliveries) admit(m inbound) (done func()) {
	if m.qos == 0 {
		return m.ack // never sent again, and no packet id to know it by
	}
	key := msgKey{id: m.id, topic: m.topic, sum: sha256.Sum256(m.payload)}
	r.mu.Lock()
	if m.dup {
		if h, ok := r.pending[key]; ok {
			h.acks = append(h.acks, m.ack)
			r.mu.Unlock()
			r.skipped.Add(1)
			return nil
		}
		if r.done[key] {
			r.mu.Unlock()
			r.skipped.Add(1)
			m.ack()
			return nil
		}
	}
	delete(r.done, key)
	h := &heldMsg{acks: []func(){m.ack}}
	r.pending[key] = h
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		acks := h.acks
		h.acks = nil
		if r.pending[key] == h {
			delete(r.pending, key)
			delete(r.done, r.ring[r.next])
			r.ring[r.next] = key
			r.next = (r.next + 1) % doneKeep
			r.done[key] = true
		}
		r.mu.Unlock()
		for _, ack := range acks {
			ack()
		}
	}
}
