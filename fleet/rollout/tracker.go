package rollout

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// MaxEvents is how many lifecycle events Tracker keeps per device.
const MaxEvents = 8

// Tracker is the controller's view of the fleet, fed with what devices publish: every
// retained status (wasmfleet/devices/+/status, replayed by the broker when the controller
// subscribes, so a restarted controller has it back at once) and the update events
// (wasmfleet/devices/+/events, not retained: lost across a restart, which only makes a
// verdict wait for the next status). It is safe for concurrent use.
type Tracker struct {
	clock Clock

	mu      sync.Mutex
	devices map[string]*Device
	groups  map[string]map[string]bool
	changed func()
}

// NewTracker returns an empty Tracker; clock stamps the events it receives (nil: the
// system clock).
func NewTracker(clock Clock) *Tracker {
	if clock == nil {
		clock = SystemClock{}
	}
	return &Tracker{clock: clock, devices: map[string]*Device{}, groups: map[string]map[string]bool{}}
}

// OnChange sets a function called (without locks held) after every accepted report, for
// instance Controller.Wake.
func (t *Tracker) OnChange(f func()) {
	t.mu.Lock()
	t.changed = f
	t.mu.Unlock()
}

// Status records a device's status as read from the status topic of device (the id in the
// topic, which must be the one in the document: anybody who may publish may lie). The
// broker's last will ({"device": id, "online": false}, no modules) only marks the device
// offline: its modules, and so its verdict, stay.
func (t *Tracker) Status(device string, s *report.Status) error {
	if s == nil || s.Device != device {
		return fmt.Errorf("status on the topic of device %q is not about it", device)
	}
	c := *s
	c.Groups = slices.Clone(s.Groups)
	c.Modules = slices.Clone(s.Modules)
	t.mu.Lock()
	d := t.devices[device]
	if d == nil {
		d = &Device{ID: device}
		t.devices[device] = d
	}
	if !c.Online && len(c.Modules) == 0 && d.Status != nil {
		kept := *d.Status
		kept.Online = false
		if !c.Time.IsZero() {
			kept.Time = c.Time
		}
		c = kept
	}
	if d.Status != nil {
		for _, g := range d.Status.Groups {
			delete(t.groups[g], device)
		}
	}
	for _, g := range c.Groups {
		if t.groups[g] == nil {
			t.groups[g] = map[string]bool{}
		}
		t.groups[g][device] = true
	}
	// Replaced, never changed in place: snapshots handed out stay as they were.
	d.Status = &c
	f := t.changed
	t.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

// Event records an update event read from the events topic of device. Only the kinds that
// bear on a rollout's verdict are kept: activated, healthy, failed, rolled-back, refused.
func (t *Tracker) Event(device string, e *report.Event) error {
	if e == nil || e.Device != device {
		return fmt.Errorf("event on the topic of device %q is not about it", device)
	}
	switch e.Kind {
	case report.EventActivated, report.EventHealthy, report.EventFailed, report.EventRolledBack, report.EventRefused:
	default:
		return nil
	}
	o := Observed{Event: *e, Received: t.clock.Now()}
	t.mu.Lock()
	d := t.devices[device]
	if d == nil {
		d = &Device{ID: device}
		t.devices[device] = d
	}
	// A new slice each time: snapshots handed out stay as they were.
	keep := d.Events[max(0, len(d.Events)-(MaxEvents-1)):]
	d.Events = append(slices.Clip(slices.Clone(keep)), o)
	f := t.changed
	t.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

// Forget drops a device (its retained status was cleared).
func (t *Tracker) Forget(device string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.devices[device]; d != nil && d.Status != nil {
		for _, g := range d.Status.Groups {
			delete(t.groups[g], device)
		}
	}
	delete(t.devices, device)
}

// Devices returns a snapshot of the devices whose last status puts them in group, in no
// particular order. The snapshot shares memory with the Tracker; treat it as read-only.
func (t *Tracker) Devices(group string) []Device {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Device, 0, len(t.groups[group]))
	for id := range t.groups[group] {
		out = append(out, *t.devices[id])
	}
	return out
}

// Clock tells the time. Tests use a fake one; nothing in this package sleeps.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }
