// Package report holds what agents tell the fleet over MQTT, and where: the retained status
// document of each device, the lifecycle events of its updates, and the topic names of the
// wasmfleet/ tree (shared/DESIGN.md, "Wire protocol"). Agents write these messages; the
// controller and the dashboard parse them with Parse*, which accept only well-formed
// documents, since anything on a broker may come from anyone with publish rights.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// DefaultPrefix is the first level of every wasmfleet topic.
const DefaultPrefix = "wasmfleet"

// MaxMessageSize bounds a status or event message.
const MaxMessageSize = 256 << 10

// Topics names the wasmfleet topics under one prefix. The zero value uses DefaultPrefix.
type Topics struct{ Prefix string }

func (t Topics) p() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// GroupDesired is the retained desired state of a group.
func (t Topics) GroupDesired(group string) string { return t.p() + "/groups/" + group + "/desired" }

// DeviceDesired is the retained desired state of one device (its pins).
func (t Topics) DeviceDesired(id string) string { return t.p() + "/devices/" + id + "/desired" }

// Status is the retained status of a device.
func (t Topics) Status(id string) string { return t.p() + "/devices/" + id + "/status" }

// Events is where a device reports update lifecycle events.
func (t Topics) Events(id string) string { return t.p() + "/devices/" + id + "/events" }

// AllStatus is a filter for every device's status.
func (t Topics) AllStatus() string { return t.p() + "/devices/+/status" }

// AllEvents is a filter for every device's events.
func (t Topics) AllEvents() string { return t.p() + "/devices/+/events" }

// DeviceOf returns the device id of a status or events topic under this prefix.
func (t Topics) DeviceOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, t.p()+"/devices/")
	if !ok {
		return "", false
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok || (kind != "status" && kind != "events") || topic.ValidateDeviceID(id) != nil {
		return "", false
	}
	return id, true
}

// Module states as a status reports them.
const (
	StateActive      = "active"       // running, past its health window
	StateHealthCheck = "health-check" // running, inside its health window
	StateRolledBack  = "rolled-back"  // the target failed its health window; Previous runs
	StateFailed      = "failed"       // the target could not be installed; see Reason
	StateDownloading = "downloading"  // the target is being fetched; the old version runs
)

// Status is a device's reported state, published retained on Topics.Status. The broker's
// last will replaces it with {"device": id, "online": false} when the device vanishes.
type Status struct {
	Device       string    `json:"device"`
	Online       bool      `json:"online"`
	Time         time.Time `json:"time,omitzero"`
	AgentVersion string    `json:"agent_version,omitempty"`
	Arch         string    `json:"arch,omitempty"` // GOARCH, with the ARM version: arm64, armv7, armv6, amd64
	Engine       string    `json:"engine,omitempty"`
	Groups       []string  `json:"groups,omitempty"`
	// Applied is the sequence of the last desired state applied, by source ("group/NAME",
	// "device/ID").
	Applied      map[string]uint64 `json:"applied,omitempty"`
	TrustVersion uint64            `json:"trust_version,omitempty"`
	Modules      []ModuleStatus    `json:"modules,omitempty"`
	// Outbox counts publishes waiting for the broker, and those dropped because it was full.
	Outbox        int    `json:"outbox,omitempty"`
	OutboxDropped uint64 `json:"outbox_dropped,omitempty"`
	LastError     string `json:"last_error,omitempty"`
}

// ModuleStatus is one module on a device.
type ModuleStatus struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	SHA256   string `json:"sha256,omitempty"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Rollout  string `json:"rollout,omitempty"`
	Previous string `json:"previous,omitempty"` // version kept to roll back to
	// Target is the version the device is moving to, when it differs from Version.
	Target      string            `json:"target,omitempty"`
	Invocations uint64            `json:"invocations"`
	Failures    uint64            `json:"failures"`
	FailuresBy  map[string]uint64 `json:"failures_by,omitempty"` // by sandbox error kind
	Dropped     uint64            `json:"dropped"`               // events dropped: queue full
	P50Micros   uint64            `json:"p50_us"`
	P99Micros   uint64            `json:"p99_us"`
}

// Event kinds.
const (
	EventDownloading = "downloading"
	EventVerified    = "verified"
	EventActivated   = "activated"
	EventHealthy     = "healthy"
	EventFailed      = "failed"
	EventRolledBack  = "rolled-back"
	EventRefused     = "refused" // a desired state or release that did not verify
)

var eventKinds = map[string]bool{EventDownloading: true, EventVerified: true, EventActivated: true,
	EventHealthy: true, EventFailed: true, EventRolledBack: true, EventRefused: true}

// Event is one update lifecycle event, published (not retained) on Topics.Events.
type Event struct {
	Device  string    `json:"device"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Module  string    `json:"module,omitempty"`
	Version string    `json:"version,omitempty"`
	Rollout string    `json:"rollout,omitempty"`
	// Source is the desired state it came from ("group/NAME" or "device/ID") and Sequence
	// its sequence number.
	Source   string `json:"source,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	// Reason says why, for failed, rolled-back and refused; ErrorKind classifies it
	// (a signing refusal kind such as "replay", or a sandbox error kind such as "trap").
	Reason    string `json:"reason,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"`
}

// ParseStatus decodes and checks a status message.
func ParseStatus(data []byte) (*Status, error) {
	var s Status
	if err := decode(data, &s); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if err := topic.ValidateDeviceID(s.Device); err != nil {
		return nil, fmt.Errorf("status: device: %w", err)
	}
	for i, m := range s.Modules {
		if m.Name == "" || m.State == "" {
			return nil, fmt.Errorf("status: modules[%d]: name and state are required", i)
		}
	}
	return &s, nil
}

// ParseEvent decodes and checks an event message.
func ParseEvent(data []byte) (*Event, error) {
	var e Event
	if err := decode(data, &e); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	if err := topic.ValidateDeviceID(e.Device); err != nil {
		return nil, fmt.Errorf("event: device: %w", err)
	}
	if !eventKinds[e.Kind] {
		return nil, fmt.Errorf("event: kind %q is not one of downloading, verified, activated, healthy, failed, rolled-back, refused", e.Kind)
	}
	return &e, nil
}

// decode reads exactly one JSON object with no unknown fields.
func decode(data []byte, v any) error {
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%d bytes, more than the %d allowed", len(data), MaxMessageSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid message: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("not a valid message: data after the JSON object")
	}
	return nil
}
