package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Store is the bucket as the controller uses it: objects read with their version (S3's
// ETag) and written only while that version is current (If-Match), or only when absent
// (If-None-Match: *). Every write the controller makes is conditional.
type Store interface {
	// Get returns an object and its version, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (data []byte, version string, err error)
	// Put writes the object if its current version is ifVersion, or, with ifVersion "",
	// if there is no object at key. It returns the new version, or an error wrapping
	// ErrConflict when the condition does not hold.
	Put(ctx context.Context, key string, data []byte, ifVersion string) (version string, err error)
	// List returns the keys under prefix, in any order.
	List(ctx context.Context, prefix string) ([]string, error)
}

// Errors of a Store.
var (
	ErrNotFound = errors.New("no such object")
	ErrConflict = errors.New("the object changed meanwhile (conditional write refused)")
)

// Publisher sends a retained message (QoS 1) and returns once the broker has it.
type Publisher interface {
	PublishRetained(ctx context.Context, topic string, payload []byte) error
}

// Reports is the controller's view of the devices; Tracker is one.
type Reports interface {
	// Devices returns the devices whose last status puts them in group.
	Devices(group string) []Device
}

// Options configure a Controller. Store is always required; Publisher, Signers and Reports
// only to drive rollouts (Tick, Run): an operator's tool that only starts, pauses, resumes
// and aborts rollouts needs none of them.
type Options struct {
	Store     Store
	Publisher Publisher
	// Signers hold the rollout role's keys (as many as its threshold). Never release keys.
	Signers []signature.Signer
	Reports Reports
	// Clock: nil is the system clock.
	Clock Clock
	// Topics: the zero value is the wasmfleet/ prefix.
	Topics report.Topics
	// ID names this controller in the documents it writes (their lease). Empty: the host
	// name and a random suffix. A controller restarted with the same ID resumes at once;
	// with another, it waits for the lease of its predecessor to run out.
	ID string
	// Lease is how long a rollout stays with the controller that wrote it last; default 30s.
	Lease time.Duration
	// DesiredTTL is how long a signed desired state is valid; it is re-signed when half of
	// that has passed. Default 7 days (168h).
	DesiredTTL time.Duration
	// Interval is how often Run ticks when nothing wakes it; default 2s. MinInterval is the
	// least time between two ticks, however often Wake is called; default 250ms.
	Interval, MinInterval time.Duration
	Log                   zerolog.Logger
}

// Defaults of Options.
const (
	DefaultLease       = 30 * time.Second
	DefaultDesiredTTL  = 7 * 24 * time.Hour
	DefaultInterval    = 2 * time.Second
	DefaultMinInterval = 250 * time.Millisecond
)

// maxStepsPerTick bounds the transitions one tick makes on one rollout (with no soak, a
// wave can pass, soak and open the next in one tick).
const maxStepsPerTick = 8

// Controller drives rollouts: each Tick reads every rollout document, runs Step on it with
// what the devices reported, and persists, audits and publishes what follows.
type Controller struct {
	o    Options
	log  zerolog.Logger
	wake chan struct{}

	tick sync.Mutex // one Tick at a time

	mu       sync.Mutex
	audited  map[string]uint64   // rollout id → last step whose audit record is known written
	finished map[string]*Rollout // final documents whose desired state is out
}

// New checks the options and returns a Controller.
func New(o Options) (*Controller, error) {
	if o.Store == nil {
		return nil, errors.New("rollout controller: a store is required")
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		o.ID = strings.Trim(host+"-"+hex.EncodeToString(b[:]), "-")
	}
	if len(o.ID) > MaxActor || !printable(o.ID) {
		return nil, fmt.Errorf("rollout controller: id %q must be 1 to %d printable bytes", o.ID, MaxActor)
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.DesiredTTL <= 0 {
		o.DesiredTTL = DefaultDesiredTTL
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	return &Controller{
		o: o, log: o.Log.With().Str("controller", o.ID).Logger(), wake: make(chan struct{}, 1),
		audited: map[string]uint64{}, finished: map[string]*Rollout{},
	}, nil
}

// ID is the controller's name in the leases it takes.
func (c *Controller) ID() string { return c.o.ID }

// Wake asks Run for a tick soon (for instance, on a device report).
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run ticks until ctx ends: every Interval, and soon after Wake.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.canDrive(); err != nil {
		return err
	}
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		if err := c.Tick(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("rollout tick")
		}
		pace := time.NewTimer(c.o.MinInterval)
		select {
		case <-ctx.Done():
			pace.Stop()
			return nil
		case <-pace.C:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
	}
}

func (c *Controller) canDrive() error {
	switch {
	case c.o.Publisher == nil:
		return errors.New("rollout controller: a publisher is required to drive rollouts")
	case len(c.o.Signers) == 0:
		return errors.New("rollout controller: a rollout key is required to drive rollouts")
	case c.o.Reports == nil:
		return errors.New("rollout controller: device reports are required to drive rollouts")
	}
	return nil
}

// Tick drives every rollout one step further where it can. A rollout that another
// controller holds (its lease) is left alone; a conditional write that loses to another
// writer is given up, and the next tick starts again from what was written. Errors of one
// rollout do not stop the others; they are returned together.
func (c *Controller) Tick(ctx context.Context) error {
	if err := c.canDrive(); err != nil {
		return err
	}
	c.tick.Lock()
	defer c.tick.Unlock()
	ids, err := c.ids(ctx)
	if err != nil {
		return err
	}
	var errs []error
	docs := map[string]*Rollout{}
	vers := map[string]string{}
	for _, id := range ids {
		c.mu.Lock()
		f := c.finished[id]
		c.mu.Unlock()
		if f != nil {
			docs[id] = f
			continue
		}
		r, ver, err := c.load(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
			continue
		}
		docs[id], vers[id] = r, ver
	}
	latest := latestOf(docs)
	for _, id := range ids {
		ver, ok := vers[id]
		if !ok {
			continue // finished, or unreadable
		}
		out, err := c.drive(ctx, docs[id], ver, latest[docs[id].Group] == docs[id])
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
		} else if out.State.Final() && out.Published {
			c.mu.Lock()
			c.finished[id] = out
			c.mu.Unlock()
		}
	}
	// The latest rollout of each group keeps the group's desired state from expiring, also
	// once it is over (while one runs, it is the latest, and was re-signed above).
	groups := make([]string, 0, len(latest))
	for g := range latest {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		id := latest[g].ID
		if _, driven := vers[id]; driven || !c.refreshDue(latest[g], c.o.Clock.Now(), true) {
			continue
		}
		c.mu.Lock()
		delete(c.finished, id)
		c.mu.Unlock()
		r, ver, err := c.load(ctx, id)
		if err == nil {
			_, err = c.drive(ctx, r, ver, true)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// latestOf returns the latest rollout of each group (the one running, else the one that
// signed last): the one whose desired state the group's retained message holds.
func latestOf(docs map[string]*Rollout) map[string]*Rollout {
	out := map[string]*Rollout{}
	for _, r := range docs {
		if l := out[r.Group]; l == nil || later(r, l) {
			out[r.Group] = r
		}
	}
	return out
}

// later orders the rollouts of a group: a running one before finished ones, then by
// sequence, then by creation.
func later(a, b *Rollout) bool {
	if a.State.Final() != b.State.Final() {
		return !a.State.Final()
	}
	if a.Sequence != b.Sequence {
		return a.Sequence > b.Sequence
	}
	return a.Created.After(b.Created)
}

// drive runs one rollout as far as it goes now: Step, sign, conditional write, audit,
// publish, record the publication. It returns the document as it last read or wrote it.
//
// The order is what makes a crash harmless: the transition (with the signed desired state
// it leads to) is written before anything is published, so a controller that dies after
// the write finds it and publishes the very same bytes; one that dies before the write
// finds the old state and decides again.
func (c *Controller) drive(ctx context.Context, r *Rollout, ver string, latest bool) (*Rollout, error) {
	id := r.ID
	for range maxStepsPerTick {
		// The audit record of the last transition first, lease or not: it is the same
		// bytes under the same key whoever writes it.
		if err := c.ensureAudit(ctx, r); err != nil {
			return r, err
		}
		now := c.o.Clock.Now()
		if r.Owner != "" && r.Owner != c.o.ID && now.Before(r.LeaseUntil) {
			c.log.Debug().Str("rollout", id).Str("owner", r.Owner).Msg("held by another controller")
			return r, nil
		}
		var devices []Device
		if !r.State.Final() && !r.WaveStarted.IsZero() {
			devices = c.o.Reports.Devices(r.Group)
		}
		next := Step(r, now, devices)
		if next == nil && c.refreshDue(r, now, latest) {
			next = r.transition(now, r.State, r.Wave, ActorController, "desired state re-signed before it expires", nil)
			next.resign()
		}
		if next == nil {
			if r.Desired != nil && r.Published {
				return r, nil // waiting: for devices, the soak, or an operator
			}
			next = r.clone() // unsigned or unpublished: finish that
		}
		stepped := next.Last.Step != r.Last.Step
		if next.Desired == nil {
			floor, err := c.groupFloor(ctx, r)
			if err != nil {
				return r, err
			}
			if err := c.sign(ctx, next, now, floor); err != nil {
				return r, err
			}
		}
		next.Owner, next.LeaseUntil, next.Updated = c.o.ID, now.Add(c.o.Lease).UTC(), now.UTC()
		nver, err := c.put(ctx, next, ver)
		if errors.Is(err, ErrConflict) {
			c.log.Debug().Str("rollout", id).Msg("another writer was first; backing off")
			return r, nil
		}
		if err != nil {
			return r, err
		}
		r, ver = next, nver
		if stepped {
			c.log.Info().Str("rollout", id).Str("from", string(r.Last.From)).Str("to", string(r.State)).
				Int("wave", r.Wave+1).Str("reason", r.Last.Reason).Msg("rollout transition")
		}
		if err := c.ensureAudit(ctx, r); err != nil {
			return r, err
		}
		if !r.Published {
			now := c.o.Clock.Now()
			// The lease must outlast the publish by a margin: past it, another controller
			// may already have written (and published) something newer.
			if !now.Before(r.LeaseUntil.Add(-c.o.Lease / 4)) {
				return r, nil
			}
			if err := c.o.Publisher.PublishRetained(ctx, c.o.Topics.GroupDesired(r.Group), r.Desired); err != nil {
				return r, fmt.Errorf("publish desired state %d of group %s: %w", r.Sequence, r.Group, err)
			}
			done := r.clone()
			done.Published, done.Updated = true, now.UTC()
			if done.WaveStarted.IsZero() {
				done.WaveStarted = now.UTC()
			}
			nver, err := c.put(ctx, done, ver)
			if errors.Is(err, ErrConflict) {
				return r, nil
			}
			if err != nil {
				return r, err
			}
			r, ver = done, nver
			c.log.Info().Str("rollout", id).Str("group", r.Group).Uint64("sequence", r.Sequence).
				Float64("percent", r.Percent()).Str("state", string(r.State)).Msg("desired state published")
		}
		if !stepped {
			return r, nil
		}
	}
	return r, nil
}

// groupFloor is the highest sequence the other rollouts of r's group signed, read afresh
// (another controller may have re-signed a finished one): the group's rollouts share its
// one sequence. Signing is rare (once per wave), so this costs little.
func (c *Controller) groupFloor(ctx context.Context, r *Rollout) (uint64, error) {
	ids, err := c.ids(ctx)
	if err != nil {
		return 0, err
	}
	var floor uint64
	for _, id := range ids {
		c.mu.Lock()
		f := c.finished[id]
		c.mu.Unlock()
		if id == r.ID || f != nil && f.Group != r.Group {
			continue
		}
		o, _, err := c.load(ctx, id)
		if err != nil {
			return 0, err
		}
		if o.Group != r.Group {
			continue
		}
		floor = max(floor, o.Sequence)
		if f != nil {
			c.mu.Lock()
			c.finished[id] = o
			c.mu.Unlock()
		}
	}
	return floor, nil
}

func (c *Controller) refreshDue(r *Rollout, now time.Time, latest bool) bool {
	return r.Desired != nil && r.Published && (latest || !r.State.Final()) &&
		!now.Before(r.Signed.Add(c.o.DesiredTTL/2))
}

// sign makes the desired state of n's current content with the next sequence of its
// group: above its own last, and above floor, the highest any rollout of the group signed.
func (c *Controller) sign(ctx context.Context, n *Rollout, now time.Time, floor uint64) error {
	seq := max(n.Sequence, floor) + 1
	env, err := signing.SignDesired(ctx, n.Content(seq, now.Add(c.o.DesiredTTL)), c.o.Signers...)
	if err != nil {
		return fmt.Errorf("sign desired state %d of group %s: %w", seq, n.Group, err)
	}
	n.Sequence, n.Desired, n.Signed, n.Published = seq, env, now.UTC(), false
	return nil
}

// ensureAudit writes the audit record of r's last transition unless it is known to exist.
// The write is create-only: a record already there (written before a crash, or by another
// controller) is left as it is.
func (c *Controller) ensureAudit(ctx context.Context, r *Rollout) error {
	c.mu.Lock()
	done := c.audited[r.ID] >= r.Last.Step
	c.mu.Unlock()
	if done {
		return nil
	}
	key, data, err := auditRecord(r)
	if err != nil {
		return err
	}
	if _, err := c.o.Store.Put(ctx, key, data, ""); err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("write audit record %s: %w", key, err)
	}
	c.mu.Lock()
	c.audited[r.ID] = max(c.audited[r.ID], r.Last.Step)
	c.mu.Unlock()
	return nil
}

func (c *Controller) load(ctx context.Context, id string) (*Rollout, string, error) {
	key, err := objects.RolloutKey(id)
	if err != nil {
		return nil, "", err
	}
	data, ver, err := c.o.Store.Get(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", key, err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", key, err)
	}
	if r.ID != id {
		return nil, "", fmt.Errorf("read %s: the document is rollout %q", key, r.ID)
	}
	return r, ver, nil
}

func (c *Controller) put(ctx context.Context, r *Rollout, ifVersion string) (string, error) {
	key, err := objects.RolloutKey(r.ID)
	if err != nil {
		return "", err
	}
	data, err := r.Marshal()
	if err != nil {
		return "", err
	}
	v, err := c.o.Store.Put(ctx, key, data, ifVersion)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", key, err)
	}
	return v, nil
}

func (c *Controller) ids(ctx context.Context) ([]string, error) {
	keys, err := c.o.Store.List(ctx, objects.RolloutsPrefix)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	var ids []string
	for _, k := range keys {
		id, ok := strings.CutSuffix(strings.TrimPrefix(k, objects.RolloutsPrefix), ".json")
		if !ok || topic.ValidateDeviceID(id) != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Get reads one rollout.
func (c *Controller) Get(ctx context.Context, id string) (*Rollout, error) {
	r, _, err := c.load(ctx, id)
	return r, err
}

// List reads every rollout, sorted by id.
func (c *Controller) List(ctx context.Context) ([]*Rollout, error) {
	ids, err := c.ids(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Rollout, 0, len(ids))
	for _, id := range ids {
		r, _, err := c.load(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Start records a new rollout (state running, wave 1, nothing published yet: the
// controller that drives it signs and publishes the first wave). It refuses a second
// rollout in a group that has one running, soaking or paused: the rollouts of a group share
// its one desired state and its sequence.
func (c *Controller) Start(ctx context.Context, s Spec) (*Rollout, error) {
	now := c.o.Clock.Now().UTC()
	r := &Rollout{
		ID: s.ID, Release: s.Release, Previous: cloneRef(s.Previous), Group: s.Group,
		Waves: slices.Clone(s.Waves), Soak: modules.Duration(s.Soak), MaxFailure: s.MaxFailure,
		MinDevices: s.MinDevices, Timeout: modules.Duration(s.Timeout),
		State: Running, Created: now, Updated: now,
	}
	if r.ID == "" {
		var b [3]byte
		rand.Read(b[:])
		r.ID = "r-" + now.Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
	}
	if r.Waves == nil {
		r.Waves = slices.Clone(DefaultWaves)
	}
	if r.Timeout == 0 {
		r.Timeout = modules.Duration(DefaultTimeout)
	}
	actor := s.Actor
	if actor == "" {
		actor = "operator"
	}
	if cur := s.Current; cur != nil {
		if cur.Target != (signing.Target{Group: s.Group}) {
			return nil, fmt.Errorf("start rollout: the current desired state is for %s, not group %s", cur.Target, s.Group)
		}
		r.Sequence = cur.Sequence
		for _, m := range cur.Modules {
			if m.Release.Name != s.Release.Name {
				m.Previous = cloneRef(m.Previous)
				r.Base = append(r.Base, m)
				continue
			}
			if r.Previous == nil {
				if m.WavePercent != 100 {
					return nil, fmt.Errorf("start rollout: module %s is at %g%% of group %s in rollout %s; finish or abort that first",
						m.Release.Name, m.WavePercent, s.Group, m.Rollout)
				}
				r.Previous = cloneRef(&m.Release)
			}
		}
	}
	if p := r.Previous; p != nil {
		if p.Name != r.Release.Name {
			return nil, fmt.Errorf("start rollout: previous release is module %s, not %s", p.Name, r.Release.Name)
		}
		pv, err1 := modules.ParseVersion(p.Version)
		rv, err2 := modules.ParseVersion(r.Release.Version)
		if err1 == nil && err2 == nil && rv.Compare(pv) <= 0 {
			return nil, fmt.Errorf("start rollout: %s is not above %s, which group %s runs; publish a higher version instead",
				r.Release.Version, p.Version, s.Group)
		}
	}
	ids, err := c.ids(ctx)
	if err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	for _, id := range ids {
		other, _, err := c.load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("start rollout: %w", err)
		}
		if other.Group != s.Group {
			continue
		}
		if !other.State.Final() {
			return nil, fmt.Errorf("start rollout: rollout %s is %s in group %s; one rollout per group at a time", other.ID, other.State, s.Group)
		}
		r.Sequence = max(r.Sequence, other.Sequence)
	}
	r.Last = Transition{Step: 1, Time: now, To: Running, Actor: actor,
		Reason: fmt.Sprintf("started by %s: %s@%s to group %s in waves %v", actor, r.Release.Name, r.Release.Version, r.Group, r.Waves)}
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	if _, err := c.put(ctx, r, ""); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("start rollout: rollout %s exists", r.ID)
		}
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	if err := c.ensureAudit(ctx, r); err != nil {
		return r, err
	}
	c.Wake()
	return r, nil
}

// Pause stops a rollout from opening further waves. It keeps counting failures, and still
// aborts.
func (c *Controller) Pause(ctx context.Context, id, actor string) (*Rollout, error) {
	return c.operate(ctx, id, actor, func(r *Rollout, now time.Time) (*Rollout, error) { return pause(r, now, actor) })
}

// Resume lets a paused rollout go on: its wave is judged again and, if it passes, soaks in
// full before the next opens.
func (c *Controller) Resume(ctx context.Context, id, actor string) (*Rollout, error) {
	return c.operate(ctx, id, actor, func(r *Rollout, now time.Time) (*Rollout, error) { return resume(r, now, actor) })
}

// Abort stops a rollout and sends every device of the group back to the previous release
// (the controller signs and publishes that desired state on its next tick).
func (c *Controller) Abort(ctx context.Context, id, actor, reason string) (*Rollout, error) {
	return c.operate(ctx, id, actor, func(r *Rollout, now time.Time) (*Rollout, error) { return abort(r, now, actor, reason) })
}

// operate applies an operator's transition with a conditional write, reading again when a
// controller wrote meanwhile: the operator's intent is not lost to a lease it does not
// hold. Asking for the state the rollout is already in changes nothing.
func (c *Controller) operate(ctx context.Context, id, actor string, f func(*Rollout, time.Time) (*Rollout, error)) (*Rollout, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	const attempts = 5
	for range attempts {
		r, ver, err := c.load(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := c.ensureAudit(ctx, r); err != nil {
			return nil, err
		}
		n, err := f(r, c.o.Clock.Now())
		if err != nil || n == nil {
			return r, err
		}
		if _, err := c.put(ctx, n, ver); errors.Is(err, ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		if err := c.ensureAudit(ctx, n); err != nil {
			return n, err
		}
		c.Wake()
		return n, nil
	}
	return nil, fmt.Errorf("rollout %s: %w %d times", id, ErrConflict, attempts)
}

func checkActor(a string) error {
	if a == "" || len(a) > MaxActor || !printable(a) {
		return fmt.Errorf("actor %q must be 1 to %d printable bytes", a, MaxActor)
	}
	return nil
}
