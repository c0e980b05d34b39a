package rollout

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Device is what the controller knows of one device: its last status and its last update
// events (Tracker keeps them).
type Device struct {
	ID string
	// Status is the last retained status (nil: none seen). Its modules are kept across the
	// broker's last-will message, which only says the device went offline.
	Status *report.Status
	// Events are the last lifecycle events that bear on rollouts, oldest first.
	Events []Observed
}

// Observed is an event with the time the controller received it (by its own clock, where
// Event.Time is the device's).
type Observed struct {
	report.Event
	Received time.Time
}

// In reports whether the device's last status puts it in group.
func (d *Device) In(group string) bool {
	return d.Status != nil && slices.Contains(d.Status.Groups, group)
}

// Outcome is what a device's reports say about the rollout.
type Outcome int

const (
	// Unknown: nothing reported about this rollout yet.
	Unknown Outcome = iota
	// Pending: on its way (downloading, inside its health window).
	Pending
	// Healthy: runs the rollout's target, past its health window (or, once aborted, runs
	// Previous again).
	Healthy
	// Failed: refused the desired state, failed to install, or rolled back locally.
	Failed
)

func (o Outcome) String() string {
	return [...]string{"unknown", "pending", "healthy", "failed"}[o]
}

// Verdict is a device's outcome and, for a failure, why.
type Verdict struct {
	Outcome Outcome
	Reason  string
}

// Judge reads a device's reports for the rollout in its current state. It only looks at
// what the device said; whether the device is in the wave, and whether its silence has
// lasted too long, is for Evaluate.
func Judge(r *Rollout, d *Device) Verdict {
	var sv, ev Verdict
	var st, et time.Time
	if d.Status != nil {
		sv, st = statusVerdict(r, d.Status), d.Status.Time
	}
	ev, et = eventVerdict(r, d.Events)
	switch {
	case ev.Outcome == Unknown:
		return sv
	case sv.Outcome == Unknown:
		return ev
	case et.After(st): // both from the device's clock
		return ev
	}
	return sv
}

func statusVerdict(r *Rollout, s *report.Status) Verdict {
	var m *report.ModuleStatus
	for i := range s.Modules {
		if s.Modules[i].Name == r.Release.Name {
			m = &s.Modules[i]
			break
		}
	}
	if r.Aborted() {
		switch {
		case r.Previous == nil && m == nil:
			return Verdict{Outcome: Healthy, Reason: "module removed"}
		case r.Previous != nil && m != nil && m.Version == r.Previous.Version && m.State != report.StateFailed && m.State != report.StateDownloading:
			return Verdict{Outcome: Healthy, Reason: "back on " + r.Previous.Version}
		}
		return Verdict{}
	}
	if m == nil {
		return Verdict{}
	}
	rel := r.Release
	same := m.Version == rel.Version && (m.SHA256 == "" || m.SHA256 == rel.SHA256)
	switch {
	case same && m.State == report.StateActive:
		return Verdict{Outcome: Healthy}
	case same && m.State == report.StateHealthCheck:
		return Verdict{Outcome: Pending, Reason: "in its health window"}
	case m.State == report.StateRolledBack && m.Rollout == r.ID:
		return Verdict{Outcome: Failed, Reason: "rolled back: " + m.Reason}
	case m.State == report.StateFailed && m.Version == rel.Version,
		m.Target == rel.Version && m.State != report.StateDownloading:
		return Verdict{Outcome: Failed, Reason: "install failed: " + m.Reason}
	case m.State == report.StateDownloading:
		return Verdict{Outcome: Pending, Reason: "downloading"}
	}
	return Verdict{}
}

func eventVerdict(r *Rollout, events []Observed) (Verdict, time.Time) {
	for i := len(events) - 1; i >= 0; i-- {
		e := &events[i]
		if e.Kind == report.EventRefused {
			// A refusal names the source, not the rollout. A replay refusal is a stale
			// retained copy, not a verdict on this desired state.
			if e.Source == "group/"+r.Group && e.ErrorKind != signing.ErrReplay.Error() &&
				!r.WaveStarted.IsZero() && !e.Received.Before(r.WaveStarted) && !r.Aborted() {
				return Verdict{Outcome: Failed, Reason: "refused the desired state: " + e.Reason}, e.Time
			}
			continue
		}
		if e.Module != r.Release.Name || e.Rollout != r.ID {
			continue
		}
		if r.Aborted() {
			if r.Previous != nil && e.Version == r.Previous.Version && (e.Kind == report.EventActivated || e.Kind == report.EventHealthy) {
				return Verdict{Outcome: Healthy, Reason: "back on " + e.Version}, e.Time
			}
			continue
		}
		if e.Version != r.Release.Version {
			continue
		}
		switch e.Kind {
		case report.EventHealthy:
			return Verdict{Outcome: Healthy}, e.Time
		case report.EventFailed:
			return Verdict{Outcome: Failed, Reason: "install failed: " + e.Reason}, e.Time
		case report.EventRolledBack:
			return Verdict{Outcome: Failed, Reason: "rolled back: " + e.Reason}, e.Time
		case report.EventActivated:
			return Verdict{Outcome: Pending, Reason: "activated"}, e.Time
		}
	}
	return Verdict{}, time.Time{}
}

// Tally counts the devices of the current wave (or, once aborted, of the whole group) by
// outcome.
type Tally struct {
	Wave    int     `json:"wave"`
	Percent float64 `json:"percent"`
	// Expected is how many known devices of the group the wave holds.
	Expected int `json:"expected"`
	Healthy  int `json:"healthy"`
	Failed   int `json:"failed"`
	// Silent devices had no verdict when the timeout passed; they count as failures.
	Silent int `json:"silent"`
	// Pending devices have no verdict yet, inside the timeout.
	Pending int `json:"pending"`
	// Failures names some failed or silent devices (at most MaxListed), by device id.
	Failures []Failure `json:"failures,omitempty"`
}

// Failure is one failed or silent device.
type Failure struct {
	Device string `json:"device"`
	Reason string `json:"reason"`
}

// Reported is how many devices have a verdict: healthy, failed or silent.
func (t *Tally) Reported() int { return t.Healthy + t.Failed + t.Silent }

func (t *Tally) validate() error {
	if t.Wave < 0 || t.Expected < 0 || t.Healthy < 0 || t.Failed < 0 || t.Silent < 0 || t.Pending < 0 {
		return errors.New("tally: negative count")
	}
	if len(t.Failures) > MaxListed {
		return fmt.Errorf("tally: %d failures listed, more than %d", len(t.Failures), MaxListed)
	}
	return nil
}

// Evaluate tallies the devices of the group that are in the rollout's current wave (or all
// of them once aborted), as of now. Devices are in a wave as package wave says, the same
// computation every agent makes.
func Evaluate(r *Rollout, now time.Time, devices []Device) Tally {
	t := Tally{Wave: r.Wave, Percent: r.Percent()}
	deadline := time.Time{}
	if !r.WaveStarted.IsZero() {
		deadline = r.WaveStarted.Add(time.Duration(r.Timeout))
	}
	ids := make([]int, 0, len(devices))
	for i := range devices {
		ids = append(ids, i)
	}
	// Sorted, so that the failures listed do not depend on the order of the input.
	slices.SortFunc(ids, func(a, b int) int { return strings.Compare(devices[a].ID, devices[b].ID) })
	for _, i := range ids {
		d := &devices[i]
		if !d.In(r.Group) || !wave.InWave(d.ID, r.ID, t.Percent) {
			continue
		}
		t.Expected++
		v := Judge(r, d)
		switch v.Outcome {
		case Healthy:
			t.Healthy++
		case Failed:
			t.Failed++
			t.list(d.ID, v.Reason)
		default:
			if !deadline.IsZero() && !now.Before(deadline) {
				t.Silent++
				why := "silent: no verdict " + time.Duration(r.Timeout).String() + " after the desired state went out"
				if v.Reason != "" {
					why += " (last: " + v.Reason + ")"
				}
				t.list(d.ID, why)
			} else {
				t.Pending++
			}
		}
	}
	return t
}

func (t *Tally) list(id, reason string) {
	if len(t.Failures) < MaxListed {
		t.Failures = append(t.Failures, Failure{Device: id, Reason: reason})
	}
}

// abortReason says why the tally aborts the rollout, or "" when it does not: failures
// (failed and silent) above MaxFailure of the devices that reported, once MinDevices have
// reported. In the last wave the gate is at most the wave's size: a group smaller than
// MinDevices is still judged, on all of its devices.
func abortReason(r *Rollout, t *Tally) string {
	failures, reported := t.Failed+t.Silent, t.Reported()
	gate := r.MinDevices
	if r.Wave == len(r.Waves)-1 {
		gate = min(gate, t.Expected)
	}
	if reported == 0 || reported < gate || float64(failures) <= r.MaxFailure*float64(reported) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "wave %d (%g%%): %d of %d devices that reported failed (%.1f%%, more than the %.1f%% allowed",
		r.Wave+1, t.Percent, failures, reported, 100*float64(failures)/float64(reported), 100*r.MaxFailure)
	if t.Silent > 0 {
		fmt.Fprintf(&b, "; %d of them silent", t.Silent)
	}
	b.WriteString(")")
	for i, f := range t.Failures {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", failures-3)
			break
		}
		fmt.Fprintf(&b, "; %s: %s", f.Device, f.Reason)
	}
	return b.String()
}

// Step is the state machine: given the rollout, the time and what the devices reported, it
// returns the rollout's next document, or nil when nothing changes. It does not change r
// and does no I/O.
//
//   - Nothing is judged until the current desired state is out (WaveStarted is set).
//   - running, soaking, paused: too many failures (abortReason) → aborted, with a new
//     desired state sending everybody back to Previous.
//   - running → soaking when every device of the wave has a verdict (the silent ones once
//     the timeout has passed).
//   - soaking → running the next wave (a new desired state) when the soak is over, or →
//     completed after the last wave.
//   - paused waits for an operator (Resume, Abort); completed and aborted are final.
func Step(r *Rollout, now time.Time, devices []Device) *Rollout {
	if r.State.Final() || r.WaveStarted.IsZero() {
		return nil
	}
	t := Evaluate(r, now, devices)
	if reason := abortReason(r, &t); reason != "" {
		n := r.transition(now, Aborted, r.Wave, ActorController, reason, &t)
		n.AbortReason = n.Last.Reason
		n.newContent()
		return n
	}
	switch r.State {
	case Running:
		if t.Pending > 0 {
			return nil
		}
		reason := fmt.Sprintf("wave %d (%g%%) passed: %d healthy, %d failed, %d silent of %d devices",
			r.Wave+1, t.Percent, t.Healthy, t.Failed, t.Silent, t.Expected)
		n := r.transition(now, Soaking, r.Wave, ActorController, reason, &t)
		n.SoakUntil = now.UTC().Add(time.Duration(r.Soak))
		return n
	case Soaking:
		if now.Before(r.SoakUntil) {
			return nil
		}
		if r.Wave == len(r.Waves)-1 {
			return r.transition(now, Completed, r.Wave, ActorController, "soak of the last wave over", &t)
		}
		n := r.transition(now, Running, r.Wave+1, ActorController,
			fmt.Sprintf("soak of wave %d over; wave %d (%g%%) opens", r.Wave+1, r.Wave+2, r.Waves[r.Wave+1]), &t)
		n.newContent()
		return n
	}
	return nil
}

// The operator's transitions.

// ErrState is returned when an operator asks for a transition the rollout's state does not
// allow (pausing a completed rollout, for instance).
var ErrState = errors.New("not possible in this state")

func pause(r *Rollout, now time.Time, actor string) (*Rollout, error) {
	switch r.State {
	case Paused:
		return nil, nil
	case Running, Soaking:
		return r.transition(now, Paused, r.Wave, actor, "paused by "+actor, nil), nil
	}
	return nil, fmt.Errorf("pause rollout %s: %w: it is %s", r.ID, ErrState, r.State)
}

func resume(r *Rollout, now time.Time, actor string) (*Rollout, error) {
	switch r.State {
	case Running, Soaking:
		return nil, nil
	case Paused:
		// The wave is judged again; if it passes, its soak starts again in full.
		return r.transition(now, Running, r.Wave, actor, "resumed by "+actor, nil), nil
	}
	return nil, fmt.Errorf("resume rollout %s: %w: it is %s", r.ID, ErrState, r.State)
}

func abort(r *Rollout, now time.Time, actor, reason string) (*Rollout, error) {
	switch r.State {
	case Aborted:
		return nil, nil
	case Running, Soaking, Paused:
		why := "aborted by " + actor
		if reason != "" {
			why += ": " + reason
		}
		n := r.transition(now, Aborted, r.Wave, actor, why, nil)
		n.AbortReason = n.Last.Reason
		n.newContent()
		return n, nil
	}
	return nil, fmt.Errorf("abort rollout %s: %w: it is %s", r.ID, ErrState, r.State)
}
