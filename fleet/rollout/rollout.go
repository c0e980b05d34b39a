package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
	"github.com/wasmfleet/wasmfleet/signing"
)

// State is where a rollout is in its life.
type State string

// The states of a rollout. Completed and Aborted are final.
const (
	// Running: the current wave's desired state is out; the controller waits until every
	// device of the wave has reported or the timeout has passed.
	Running State = "running"
	// Soaking: the wave passed; the controller waits out the soak, still watching for
	// failures, before it opens the next wave.
	Soaking State = "soaking"
	// Paused: an operator stopped progress. Failures are still counted and still abort.
	Paused State = "paused"
	// Completed: the last wave (100%) passed its soak.
	Completed State = "completed"
	// Aborted: too many failures, or an operator; every device of the group is sent back to
	// Previous.
	Aborted State = "aborted"
)

// Final reports whether nothing follows s.
func (s State) Final() bool { return s == Completed || s == Aborted }

func (s State) valid() bool {
	switch s {
	case Running, Soaking, Paused, Completed, Aborted:
		return true
	}
	return false
}

// Limits of a rollout document.
const (
	// MaxDocumentSize bounds a rollout document: the signed desired state it carries is at
	// most signing.MaxEnvelopeSize, base64 makes that 4/3 larger.
	MaxDocumentSize = 2*signing.MaxEnvelopeSize + 64<<10
	// MaxWaves bounds the number of waves.
	MaxWaves = 100
	// MaxListed bounds the failed devices a Tally names.
	MaxListed = 10
	// MaxReason bounds an abort reason or a transition's reason.
	MaxReason = 4096
	// MaxActor bounds who asked for a transition, and a controller id.
	MaxActor = 128
)

// Defaults of the rollout CLI's flags. Spec takes its fields as given (a zero Soak,
// MaxFailure or MinDevices is a valid setting) except Waves and Timeout.
var DefaultWaves = []float64{1, 10, 50, 100}

const (
	DefaultSoak       = 10 * time.Minute
	DefaultMaxFailure = 0.05
	DefaultMinDevices = 3
	DefaultTimeout    = 30 * time.Minute
)

// Rollout is the document the controller keeps at rollouts/{id}.json. It holds the whole
// state of one rollout: a controller that reads it knows everything it needs to go on.
type Rollout struct {
	// ID names the rollout; with a device id it picks the device's wave bucket. Rules of
	// device ids: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'.
	ID string `json:"id"`
	// Release is what the rollout installs, Previous what the group ran before (nil: the
	// module is new to the group, and an abort removes it).
	Release  signing.ReleaseRef  `json:"release"`
	Previous *signing.ReleaseRef `json:"previous,omitempty"`
	// Group is the device group whose desired state the rollout publishes.
	Group string `json:"group"`
	// Base is the rest of the group's desired state when the rollout started: the other
	// modules' targets, carried unchanged in every desired state the rollout publishes.
	Base []signing.ModuleTarget `json:"base,omitempty"`

	// Waves are the percentages of the group that run Release, one wave after the other:
	// strictly increasing, the last 100.
	Waves []float64 `json:"waves"`
	// Soak is how long a wave that passed is watched before the next opens.
	Soak modules.Duration `json:"soak"`
	// MaxFailure is the ratio (0 to 1) of failed devices, among those that reported, above
	// which the rollout aborts, once MinDevices have reported.
	MaxFailure float64 `json:"max_failure"`
	MinDevices int     `json:"min_devices"`
	// Timeout is how long after a wave's desired state was published a device of the wave
	// may stay without a verdict; after it, such a device counts as silent, a failure.
	Timeout modules.Duration `json:"timeout"`

	State State `json:"state"`
	// Wave is the index in Waves of the current wave, from 0.
	Wave        int    `json:"wave"`
	AbortReason string `json:"abort_reason,omitempty"`

	// Sequence is the sequence number of the last desired state this rollout signed, and
	// Desired that signed envelope (nil: the controller must sign the next one, with
	// Sequence+1). Published says it has reached the broker.
	Sequence  uint64    `json:"sequence"`
	Desired   []byte    `json:"desired,omitempty"`
	Signed    time.Time `json:"signed,omitzero"`
	Published bool      `json:"published"`
	// WaveStarted is when the current content (this wave's, or the revert) was first
	// published; the timeout runs from it.
	WaveStarted time.Time `json:"wave_started,omitzero"`
	SoakUntil   time.Time `json:"soak_until,omitzero"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Last is the latest transition; its Step counts them, from 1. Each one is also an
	// audit record (AuditKey).
	Last Transition `json:"last"`

	// Owner is the controller that wrote the document last, and holds it until LeaseUntil
	// (see the package documentation, "Two controllers").
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// Transition is one change of a rollout's state (or of its wave, or a re-signing).
type Transition struct {
	Step   uint64    `json:"step"`
	Time   time.Time `json:"time"`
	From   State     `json:"from,omitempty"`
	To     State     `json:"to"`
	Wave   int       `json:"wave"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	Tally  *Tally    `json:"tally,omitempty"`
}

// Actors other than an operator's name.
const (
	ActorController = "controller"
)

// Parse decodes and checks a rollout document: one JSON object, no unknown fields, every
// rule of Validate.
func Parse(data []byte) (*Rollout, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("rollout document: %d bytes, more than %d", len(data), MaxDocumentSize)
	}
	var r Rollout
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("rollout document: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Marshal encodes the document as Parse reads it.
func (r *Rollout) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	return append(b, '\n'), nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not valid JSON of the expected shape: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// Validate checks the rules of a rollout document.
func (r *Rollout) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("rollout %q: %s", r.ID, fmt.Sprintf(format, args...))
	}
	if err := checkName("id", r.ID); err != nil {
		return bad("%v", err)
	}
	if err := checkName("group", r.Group); err != nil {
		return bad("%v", err)
	}
	if err := checkWaves(r.Waves); err != nil {
		return bad("%v", err)
	}
	if r.Wave < 0 || r.Wave >= len(r.Waves) {
		return bad("wave %d is not an index of the %d waves", r.Wave, len(r.Waves))
	}
	for _, m := range r.Base {
		if m.Release.Name == r.Release.Name {
			return bad("base holds module %s, which the rollout itself targets", m.Release.Name)
		}
	}
	// The release, the previous release and the base are checked by the rules a desired
	// state holding them must follow (the revert holds nothing else).
	if err := r.waveContent(1, time.Unix(1, 0)).Validate(); err != nil {
		return bad("%v", err)
	}
	if p := r.Previous; p != nil && p.Version == r.Release.Version {
		return bad("previous is the release itself (%s)", p)
	}
	switch {
	case r.Soak < 0:
		return bad("soak %s is negative", r.Soak)
	case r.Timeout <= 0:
		return bad("timeout %s must be positive", r.Timeout)
	case math.IsNaN(r.MaxFailure) || r.MaxFailure < 0 || r.MaxFailure > 1:
		return bad("max_failure %v is not a ratio from 0 to 1", r.MaxFailure)
	case r.MinDevices < 0 || r.MinDevices > 10_000_000:
		return bad("min_devices %d is out of range (0 to 10000000)", r.MinDevices)
	case !r.State.valid():
		return bad("state %q is not one of running, soaking, paused, completed, aborted", r.State)
	case (r.State == Aborted) != (r.AbortReason != ""):
		return bad("an abort reason goes with, and only with, the aborted state")
	case len(r.AbortReason) > MaxReason:
		return bad("abort reason is %d bytes, more than %d", len(r.AbortReason), MaxReason)
	case r.Created.IsZero() || r.Updated.IsZero():
		return bad("created and updated are required")
	case r.Published && (r.Desired == nil || r.WaveStarted.IsZero()):
		return bad("published without a desired state or the time it went out")
	case r.Desired != nil && (r.Sequence == 0 || r.Signed.IsZero()):
		return bad("a desired state needs its sequence (1 or more) and the time it was signed")
	case r.State != Soaking && !r.SoakUntil.IsZero():
		return bad("soak_until is only set while soaking")
	case r.State == Soaking && r.SoakUntil.IsZero():
		return bad("soaking without soak_until")
	case len(r.Owner) > MaxActor || !printable(r.Owner):
		return bad("owner must be at most %d printable bytes", MaxActor)
	case (r.Owner == "") != r.LeaseUntil.IsZero():
		return bad("owner and lease_until go together")
	}
	if err := r.Last.validate(len(r.Waves)); err != nil {
		return bad("last: %v", err)
	}
	if r.Last.To != r.State || r.Last.Wave != r.Wave {
		return bad("last transition leads to %s wave %d, not to the document's %s wave %d", r.Last.To, r.Last.Wave, r.State, r.Wave)
	}
	if r.Desired != nil {
		d, err := desiredOf(r.Desired)
		if err != nil {
			return bad("desired: %v", err)
		}
		if d.Target != (signing.Target{Group: r.Group}) || d.Sequence != r.Sequence {
			return bad("desired is for %s sequence %d, not group %s sequence %d", d.Target, d.Sequence, r.Group, r.Sequence)
		}
	}
	return nil
}

func (t *Transition) validate(waves int) error {
	switch {
	case t.Step == 0:
		return errors.New("step must be 1 or more")
	case t.Time.IsZero():
		return errors.New("time is required")
	case t.From != "" && !t.From.valid():
		return fmt.Errorf("from %q is not a state", t.From)
	case !t.To.valid():
		return fmt.Errorf("to %q is not a state", t.To)
	case t.Wave < 0 || t.Wave >= waves:
		return fmt.Errorf("wave %d is out of range", t.Wave)
	case t.Actor == "" || len(t.Actor) > MaxActor || !printable(t.Actor):
		return fmt.Errorf("actor must be 1 to %d printable bytes", MaxActor)
	case len(t.Reason) > MaxReason:
		return fmt.Errorf("reason is %d bytes, more than %d", len(t.Reason), MaxReason)
	}
	if t.Tally != nil {
		return t.Tally.validate()
	}
	return nil
}

func checkWaves(w []float64) error {
	if len(w) == 0 || len(w) > MaxWaves {
		return fmt.Errorf("%d waves; there must be 1 to %d", len(w), MaxWaves)
	}
	for i, p := range w {
		if math.IsNaN(p) || p <= 0 || p > 100 {
			return fmt.Errorf("wave %d is %v%%; a wave is above 0 and at most 100", i+1, p)
		}
		if i > 0 && p <= w[i-1] {
			return fmt.Errorf("wave %d (%v%%) is not above wave %d (%v%%)", i+1, p, i, w[i-1])
		}
	}
	if w[len(w)-1] != 100 {
		return fmt.Errorf("the last wave is %v%%; it must be 100", w[len(w)-1])
	}
	return nil
}

// checkName applies the rules of device ids to a rollout id or a group: both appear in
// topics and object keys.
func checkName(what, s string) error {
	if topic.ValidateDeviceID(s) != nil {
		return fmt.Errorf("%s %q is not 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'", what, s)
	}
	return nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// desiredOf decodes the payload of a desired-state envelope without checking a signature:
// the controller only reads back what it signed itself.
func desiredOf(envelope []byte) (*signing.Desired, error) {
	env, err := signing.ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	if env.PayloadType != signing.DesiredPayloadType {
		return nil, fmt.Errorf("payload type %q, want %q", env.PayloadType, signing.DesiredPayloadType)
	}
	var d signing.Desired
	if err := decodeStrict(env.Payload, &d); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Aborted reports whether the rollout is sending its devices back.
func (r *Rollout) Aborted() bool { return r.State == Aborted }

// Percent is the share of the group that runs the rollout's target now: the current wave's,
// or 100 once aborted (everybody goes back).
func (r *Rollout) Percent() float64 {
	if r.Aborted() {
		return 100
	}
	return r.Waves[r.Wave]
}

// Content is the desired state the rollout publishes in its current state, with the given
// sequence and expiry: the base, plus this module at the current wave, or sent back to
// Previous (with the rollback flag) when aborted.
func (r *Rollout) Content(sequence uint64, expires time.Time) *signing.Desired {
	return r.content(sequence, expires)
}

func (r *Rollout) content(sequence uint64, expires time.Time) *signing.Desired {
	if !r.Aborted() {
		return r.waveContent(sequence, expires)
	}
	d := r.baseContent(sequence, expires)
	if r.Previous != nil {
		// Everybody (100%) runs Previous, including the devices that already run Release:
		// Rollback lets an agent install a version below the one it runs. With no Previous
		// the module is left out, and agents remove it.
		d.Modules = append(d.Modules, signing.ModuleTarget{Release: *r.Previous, Rollout: r.ID, WavePercent: 100, Rollback: true})
	}
	sortModules(d.Modules)
	return d
}

func (r *Rollout) waveContent(sequence uint64, expires time.Time) *signing.Desired {
	d := r.baseContent(sequence, expires)
	var prev *signing.ReleaseRef
	if r.Previous != nil {
		p := *r.Previous
		prev = &p
	}
	d.Modules = append(d.Modules, signing.ModuleTarget{Release: r.Release, Rollout: r.ID, WavePercent: r.Waves[r.Wave], Previous: prev})
	sortModules(d.Modules)
	return d
}

func (r *Rollout) baseContent(sequence uint64, expires time.Time) *signing.Desired {
	d := &signing.Desired{Target: signing.Target{Group: r.Group}, Sequence: sequence, Expires: expires.UTC()}
	for _, m := range r.Base {
		m.Previous = cloneRef(m.Previous)
		d.Modules = append(d.Modules, m)
	}
	return d
}

func sortModules(ms []signing.ModuleTarget) {
	slices.SortFunc(ms, func(a, b signing.ModuleTarget) int { return strings.Compare(a.Release.Name, b.Release.Name) })
}

func cloneRef(p *signing.ReleaseRef) *signing.ReleaseRef {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// clone is a deep copy.
func (r *Rollout) clone() *Rollout {
	c := *r
	c.Previous = cloneRef(r.Previous)
	c.Base = make([]signing.ModuleTarget, len(r.Base))
	for i, m := range r.Base {
		m.Previous = cloneRef(m.Previous)
		c.Base[i] = m
	}
	if r.Base == nil {
		c.Base = nil
	}
	c.Waves = slices.Clone(r.Waves)
	c.Desired = slices.Clone(r.Desired)
	c.Last = r.Last.clone()
	return &c
}

func (t Transition) clone() Transition {
	if t.Tally != nil {
		tl := *t.Tally
		tl.Failures = slices.Clone(t.Tally.Failures)
		t.Tally = &tl
	}
	return t
}

// transition returns a copy of r moved to state to (r.Wave unless changed afterwards by the
// caller through wave), recording the step.
func (r *Rollout) transition(now time.Time, to State, wave int, actor, reason string, tally *Tally) *Rollout {
	n := r.clone()
	n.State, n.Wave, n.Updated = to, wave, now.UTC()
	if to != Soaking {
		n.SoakUntil = time.Time{}
	}
	if len(reason) > MaxReason {
		reason = strings.ToValidUTF8(reason[:MaxReason], "")
	}
	n.Last = Transition{Step: r.Last.Step + 1, Time: now.UTC(), From: r.State, To: to, Wave: wave, Actor: actor, Reason: reason, Tally: tally}
	return n
}

// newContent drops the signed desired state because what the group should run changed: the
// controller signs the next sequence, and the timeout starts again when it is out.
func (r *Rollout) newContent() {
	r.resign()
	r.WaveStarted = time.Time{}
}

// resign drops the signed desired state, content unchanged (it is about to expire).
func (r *Rollout) resign() {
	r.Desired, r.Signed, r.Published = nil, time.Time{}, false
}

// Spec is what an operator asks for: `wasmfleet rollout start`.
type Spec struct {
	// ID names the rollout; empty: one is made from the time.
	ID string
	// Release is the signed release to roll out (from its release.dsse.json).
	Release signing.ReleaseRef
	// Previous is what the group runs now; nil: taken from Current (the module's release in
	// it, when that is at 100%), else the module is new to the group.
	Previous *signing.ReleaseRef
	Group    string
	// Current is the group's desired state now, as its retained message holds it (nil:
	// none). The rollout carries its other modules and continues its sequence.
	Current *signing.Desired
	// Waves: nil means DefaultWaves.
	Waves      []float64
	Soak       time.Duration
	MaxFailure float64
	MinDevices int
	// Timeout: zero means DefaultTimeout.
	Timeout time.Duration
	// Actor is who started it, for the audit record; empty: "operator".
	Actor string
}

// ParseWaves reads "1,10,50,100" (each a percentage; a trailing % is allowed).
func ParseWaves(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		p, err := parsePercent(f)
		if err != nil {
			return nil, fmt.Errorf("waves %q: %w", s, err)
		}
		out = append(out, p)
	}
	if err := checkWaves(out); err != nil {
		return nil, fmt.Errorf("waves %q: %w", s, err)
	}
	return out, nil
}

// ParseRatio reads a failure ratio written as "5%" or "0.05".
func ParseRatio(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := parsePercent(t)
	if pct {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is not a ratio (write 5%% or 0.05)", s)
	}
	return v, nil
}

func parsePercent(s string) (float64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "%")
	if !numeric(s) {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	return v, nil
}

// numeric accepts plain decimal numbers only: digits with at most one dot.
func numeric(s string) bool {
	dots, digits := 0, 0
	for _, c := range s {
		switch {
		case c == '.':
			dots++
		case c >= '0' && c <= '9':
			digits++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
