// Package registry is the fleet's view of its devices, rebuilt from what they report: the
// retained status message of each device (protocol/report). A Registry keeps the latest
// status per device from a stream of MQTT messages and answers filtered queries; Collect
// fills one from the broker's retained messages and returns once that burst is over.
//
// Everything on the broker may come from anyone with publish rights, so a message that does
// not parse, or whose device id is not its topic's, is skipped and counted, never trusted.
// Messages are ordered by arrival, not by the time a device writes into them: a device
// without a real-time clock (most Raspberry Pis) reports 1970 until NTP answers.
//
// The package never prints; it does not publish anything and holds no desired state (that
// is the rollout controller's).
package registry

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// Device is what the registry knows of one device.
type Device struct {
	report.Status
	// Received is when the registry got the latest message for this device.
	Received time.Time `json:"received"`
	// Vanished means the latest message is the broker's last will ({"device": id,
	// "online": false}): the device went away without saying goodbye. The will carries
	// nothing else, so the other fields are those of the last full status this registry
	// saw before it, or empty when it saw none (a registry started after the device left).
	Vanished bool `json:"vanished,omitempty"`
}

// Runs reports whether the device reports module name (at version, when it is not empty).
func (d *Device) Runs(name, version string) bool {
	for _, m := range d.Modules {
		if m.Name == name && (version == "" || m.Version == version) {
			return true
		}
	}
	return false
}

// InGroup reports whether the device reports group g.
func (d *Device) InGroup(g string) bool { return slices.Contains(d.Groups, g) }

// GroupsUnknown reports whether the registry cannot tell the device's groups: a vanished
// device whose last full status it never saw.
func (d *Device) GroupsUnknown() bool { return d.Vanished && len(d.Groups) == 0 && d.Time.IsZero() }

// Filter selects devices. The zero Filter selects every device.
type Filter struct {
	// Group: only devices that report this group.
	Group string
	// Module: only devices that report this module; with Version, at this version.
	Module, Version string
	// Offline: only devices that are not online.
	Offline bool
}

// ParseModule reads "NAME" or "NAME@VERSION", as `wasmfleet devices --module` takes it.
func ParseModule(s string) (name, version string, err error) {
	name, version, at := strings.Cut(s, "@")
	if name == "" || (at && version == "") || strings.Contains(version, "@") {
		return "", "", fmt.Errorf("module %q: want NAME or NAME@VERSION", s)
	}
	return name, version, nil
}

// Match reports whether d passes the filter.
func (f Filter) Match(d *Device) bool {
	switch {
	case f.Offline && d.Online:
		return false
	case f.Group != "" && !d.InGroup(f.Group):
		return false
	case f.Module != "" && !d.Runs(f.Module, f.Version):
		return false
	}
	return true
}

// Registry keeps the latest status of each device. The zero value is not usable; call New.
// It is safe for concurrent use.
type Registry struct {
	topics report.Topics
	now    func() time.Time

	mu            sync.Mutex
	devices       map[string]*Device
	messages      uint64
	malformed     uint64
	lastMalformed error
}

// New returns an empty registry for status topics under topics' prefix. now is the clock
// for Received (nil: time.Now).
func New(topics report.Topics, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{topics: topics, now: now, devices: map[string]*Device{}}
}

// Handle takes one message from the broker. A status replaces the device's; an empty
// payload (a retained status being cleared) forgets the device; a last will keeps what was
// known and marks the device offline and vanished. A message that is not a well-formed
// status of the device its topic names is counted as malformed and returned as an error;
// the registry is unchanged.
func (r *Registry) Handle(name string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages++
	id, ok := r.topics.DeviceOf(name)
	if !ok || !strings.HasSuffix(name, "/status") {
		return r.bad(fmt.Errorf("%s: not a device status topic", name))
	}
	if len(payload) == 0 {
		delete(r.devices, id)
		return nil
	}
	s, err := report.ParseStatus(payload)
	if err != nil {
		return r.bad(fmt.Errorf("%s: %w", name, err))
	}
	if s.Device != id {
		return r.bad(fmt.Errorf("%s: status of device %q on the topic of %q", name, s.Device, id))
	}
	d := &Device{Status: *s, Received: r.now()}
	if isWill(s) {
		d.Vanished = true
		if prev := r.devices[id]; prev != nil {
			d.Status = prev.Status
			d.Online = false
		}
	}
	r.devices[id] = d
	return nil
}

// isWill reports whether s is the last will an agent leaves with the broker: the device id
// and online:false, nothing else.
func isWill(s *report.Status) bool {
	return !s.Online && s.Time.IsZero() && s.AgentVersion == "" && len(s.Groups) == 0 && len(s.Modules) == 0 &&
		len(s.Applied) == 0 && s.LastError == ""
}

func (r *Registry) bad(err error) error {
	r.malformed++
	r.lastMalformed = err
	return err
}

// Devices returns the devices that pass f, sorted by id. The copies share their slices and
// maps with the registry, which never changes them in place: do not either.
func (r *Registry) Devices(f Filter) []Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Device, 0, len(r.devices))
	for _, d := range r.devices {
		if f.Match(d) {
			out = append(out, *d)
		}
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// Device returns one device.
func (r *Registry) Device(id string) (Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[id]
	if !ok {
		return Device{}, false
	}
	return *d, true
}

// Len is the number of devices known.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.devices)
}

// Stats counts what the registry was given.
type Stats struct {
	// Messages counts every message handled, Malformed those skipped.
	Messages, Malformed uint64
	// LastMalformed says what was wrong with the last one skipped.
	LastMalformed error
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Messages: r.messages, Malformed: r.malformed, LastMalformed: r.lastMalformed}
}
