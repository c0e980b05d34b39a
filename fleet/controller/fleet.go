package controller

import (
	"slices"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// Limits of a Fleet.
const (
	// MaxHistory is how many update events (of every kind) a Fleet keeps per device.
	MaxHistory = 32
	// MaxHistoryDevices bounds the devices a Fleet keeps events for: events are not
	// retained, anyone with publish rights can send them for made-up ids, and each id would
	// otherwise cost memory for good. Events of further ids are dropped (and counted).
	MaxHistoryDevices = 1_000_000
)

// Fleet is the server's fuller view of the devices, for the dashboard, fed from the same
// subscription as the Tracker (the Feed hands it every message the Tracker accepted): each
// device's latest status as a registry.Registry holds it (with the time it arrived, and
// whether the device vanished), the device's last MaxHistory update events of every kind
// (the Tracker keeps only those a verdict reads), and listeners told of each report. It is
// safe for concurrent use.
type Fleet struct {
	reg *registry.Registry
	now func() time.Time

	mu        sync.Mutex
	history   map[string][]report.Event // oldest first
	dropped   uint64
	listeners map[int]func(Report)
	next      int
}

// Report is one accepted message from a device, as a Fleet's listeners are told of it.
// Exactly one of Status and Event is set, unless Cleared.
type Report struct {
	Device string
	// Status is the status as received (for the broker's last will: online false and
	// nothing else); the registry holds what it makes of it.
	Status *report.Status
	Event  *report.Event
	// Cleared: the device's retained status was cleared; the device is forgotten.
	Cleared bool
	// Received is when the message arrived.
	Received time.Time
}

// NewFleet returns an empty Fleet for status topics under topics' prefix; now is its clock
// (nil: time.Now).
func NewFleet(topics report.Topics, now func() time.Time) *Fleet {
	if now == nil {
		now = time.Now
	}
	return &Fleet{reg: registry.New(topics, now), now: now, history: map[string][]report.Event{}, listeners: map[int]func(Report){}}
}

// Registry holds each device's latest status.
func (f *Fleet) Registry() *registry.Registry { return f.reg }

// History returns the device's last update events, oldest first (a copy).
func (f *Fleet) History(device string) []report.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history[device])
}

// HistoryDropped counts the events dropped because MaxHistoryDevices devices had events.
func (f *Fleet) HistoryDropped() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Listen calls fn after every report the Fleet takes, on the goroutine that delivers MQTT
// messages, without locks held: fn must be quick and must not block. stop removes it.
func (f *Fleet) Listen(fn func(Report)) (stop func()) {
	f.mu.Lock()
	id := f.next
	f.next++
	f.listeners[id] = fn
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.listeners, id)
		f.mu.Unlock()
	}
}

// status takes a status message the Tracker accepted (payload empty: cleared).
func (f *Fleet) status(topic, device string, payload []byte, s *report.Status) {
	_ = f.reg.Handle(topic, payload) // parsed and checked by the Feed already: no error
	rep := Report{Device: device, Status: s, Cleared: len(payload) == 0, Received: f.now()}
	f.mu.Lock()
	if rep.Cleared {
		delete(f.history, device)
	}
	fns := f.snapshot()
	f.mu.Unlock()
	for _, fn := range fns {
		fn(rep)
	}
}

// event takes an update event the Tracker accepted.
func (f *Fleet) event(device string, e *report.Event) {
	rep := Report{Device: device, Event: e, Received: f.now()}
	f.mu.Lock()
	h, known := f.history[device]
	if known || len(f.history) < MaxHistoryDevices {
		// A new slice each time: copies handed out by History stay as they were.
		keep := h[max(0, len(h)-(MaxHistory-1)):]
		f.history[device] = append(slices.Clip(slices.Clone(keep)), *e)
	} else {
		f.dropped++
	}
	fns := f.snapshot()
	f.mu.Unlock()
	for _, fn := range fns {
		fn(rep)
	}
}

// snapshot returns the listeners; f.mu is held.
func (f *Fleet) snapshot() []func(Report) {
	if len(f.listeners) == 0 {
		return nil
	}
	fns := make([]func(Report), 0, len(f.listeners))
	for _, fn := range f.listeners {
		fns = append(fns, fn)
	}
	return fns
}
