package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// The fakes here stand in for S3, the broker and the agents, so that the tests are about the
// controller's own logic. They are strict where the real thing is: the store refuses a
// write whose condition does not hold, and every simulated agent verifies each desired state
// with package signing against a trust file, as agent/update.go does.

// t0 is the fixed start of every test's clock.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// errCrash stands for the controller process dying: the test drops the controller that
// returned it and starts another on the same store and broker.
var errCrash = errors.New("crash (simulated)")

// faults counts the operations that change something outside the controller (store writes
// and publishes) and makes one of them crash: before it takes effect, or after.
type faults struct {
	n     int
	at    int
	after bool
}

// hit returns errCrash when this operation is the chosen one; effect says whether the
// operation still takes effect.
func (f *faults) hit() (crash, effect bool) {
	if f == nil {
		return false, true
	}
	f.n++
	if f.at != 0 && f.n == f.at {
		return true, f.after
	}
	return false, true
}

type object struct {
	data    []byte
	version int
}

// memStore is a bucket with S3's conditional writes.
type memStore struct {
	mu       sync.Mutex
	objects  map[string]object
	next     int
	faults   *faults
	gets     int
	puts     int
	lists    int
	mismatch []string // create-only writes of an existing key with other bytes
	// beforePut, when set, runs before every write (outside the lock).
	beforePut func(key string)
}

func newMemStore() *memStore { return &memStore{objects: map[string]object{}} }

func (s *memStore) Get(_ context.Context, key string) ([]byte, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	o, ok := s.objects[key]
	if !ok {
		return nil, "", fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return slices.Clone(o.data), fmt.Sprint(o.version), nil
}

func (s *memStore) Put(_ context.Context, key string, data []byte, ifVersion string) (string, error) {
	if f := s.beforePut; f != nil {
		f(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	crash, effect := s.faults.hit()
	if !effect {
		return "", errCrash
	}
	o, exists := s.objects[key]
	switch {
	case ifVersion == "" && exists:
		if !bytes.Equal(o.data, data) {
			s.mismatch = append(s.mismatch, key)
		}
		return "", fmt.Errorf("put %s: %w", key, ErrConflict)
	case ifVersion != "" && (!exists || fmt.Sprint(o.version) != ifVersion):
		return "", fmt.Errorf("put %s: %w", key, ErrConflict)
	}
	s.next++
	s.objects[key] = object{data: slices.Clone(data), version: s.next}
	if crash {
		return "", errCrash
	}
	return fmt.Sprint(s.next), nil
}

func (s *memStore) List(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	var out []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (s *memStore) keys(prefix string) []string {
	out, _ := s.List(context.Background(), prefix)
	sort.Strings(out)
	return out
}

// memBroker keeps retained messages and logs every publish.
type memBroker struct {
	mu       sync.Mutex
	retained map[string][]byte
	log      []published
	faults   *faults
	// beforePublish, when set, runs before every publish.
	beforePublish func()
}

type published struct {
	topic   string
	payload []byte
}

func newMemBroker() *memBroker { return &memBroker{retained: map[string][]byte{}} }

func (b *memBroker) PublishRetained(_ context.Context, topic string, payload []byte) error {
	if f := b.beforePublish; f != nil {
		f()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	crash, effect := b.faults.hit()
	if !effect {
		return errCrash
	}
	b.retained[topic] = slices.Clone(payload)
	b.log = append(b.log, published{topic, slices.Clone(payload)})
	if crash {
		return errCrash
	}
	return nil
}

// behavior is what a simulated device does with the new release.
type behavior int

const (
	good        behavior = iota
	failInstall          // the install fails (a download or verification error)
	failHealth           // it activates, fails its health window and rolls back locally
	silent               // says nothing at all after the start
	refuse               // refuses every new desired state (as with a key it does not trust)
)

// simDevice is an agent as agent/update.go behaves, reduced to one module.
type simDevice struct {
	id      string
	does    behavior
	applied uint64
	kept    []byte
	version string // running version of the module ("" none)
	rollout string
	state   string
	blocked string
	target  string // the version that failed to install
	reason  string
}

const (
	testGroup  = "greenhouse"
	testModule = "threshold-alert"
)

type harness struct {
	t        testing.TB
	clock    *fakeClock
	store    *memStore
	broker   *memBroker
	tracker  *Tracker
	key      signature.SignerVerifier
	verifier *signing.Verifier
	devices  []*simDevice
	rel      signing.ReleaseRef
	prev     signing.ReleaseRef
	other    signing.ReleaseRef
	current  *signing.Desired
	// refusals are desired states a simulated agent refused for a reason other than its
	// behaviour: they must not happen.
	refusals []string
	verified map[string]*signing.Desired
	// reverted counts devices that went back to the previous release from the new one.
	reverted int
}

func ref(name, version string, seed byte) signing.ReleaseRef {
	return signing.ReleaseRef{Name: name, Version: version, SHA256: strings.Repeat(fmt.Sprintf("%02x", seed), 32), Size: 1000 + uint64(seed)}
}

// newHarness makes n devices named dev-0000… in testGroup, all running prev, with the
// group's desired state at sequence 5 (prev and another module, both at 100%).
func newHarness(t testing.TB, n int, does func(id string) behavior) *harness {
	t.Helper()
	h := &harness{
		t: t, clock: &fakeClock{now: t0}, store: newMemStore(), broker: newMemBroker(),
		key: signingtest.NewSigner(t),
		rel: ref(testModule, "1.3.0", 0x13), prev: ref(testModule, "1.2.0", 0x12), other: ref("echo", "0.1.0", 0x01),
	}
	h.tracker = NewTracker(h.clock)
	root := signingtest.NewSigner(t)
	f := signingtest.NewTrustFile(1, t0.Add(10*365*24*time.Hour))
	f.Roles.Root = signingtest.Role(t, f, 1, root)
	f.Roles.Release = signingtest.Role(t, f, 1, signingtest.NewSigner(t))
	f.Roles.Rollout = signingtest.Role(t, f, 1, h.key)
	env := signingtest.Sign(t, f, root)
	trust, err := signing.ParseTrust(env)
	if err != nil {
		t.Fatal(err)
	}
	h.verifier = &signing.Verifier{Trust: trust, Now: h.clock.Now}
	h.current = &signing.Desired{Target: signing.Target{Group: testGroup}, Sequence: 5, Expires: t0.Add(24 * time.Hour),
		Modules: []signing.ModuleTarget{
			{Release: h.other, Rollout: "r-old-echo", WavePercent: 100},
			{Release: h.prev, Rollout: "r-old", WavePercent: 100},
		}}
	for i := range n {
		id := fmt.Sprintf("dev-%04d", i)
		d := &simDevice{id: id, applied: 5, version: h.prev.Version, rollout: "r-old", state: report.StateActive}
		if does != nil {
			d.does = does(id)
		}
		h.devices = append(h.devices, d)
		h.report(d)
	}
	return h
}

func (h *harness) controller(id string) *Controller {
	h.t.Helper()
	c, err := New(Options{Store: h.store, Publisher: h.broker, Signers: []signature.Signer{h.key}, Reports: h.tracker,
		Clock: h.clock, ID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// spec is the rollout of rel in 1, 10, 50, 100% with a 10 minute soak, 5% failures
// allowed once 3 devices reported, and a 30 minute timeout.
func (h *harness) spec(id string) Spec {
	return Spec{ID: id, Release: h.rel, Group: testGroup, Current: h.current, Waves: []float64{1, 10, 50, 100},
		Soak: 10 * time.Minute, MaxFailure: 0.05, MinDevices: 3, Timeout: 30 * time.Minute, Actor: "alice"}
}

func (h *harness) start(c *Controller, s Spec) *Rollout {
	h.t.Helper()
	r, err := c.Start(context.Background(), s)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) status(d *simDevice) *report.Status {
	s := &report.Status{Device: d.id, Online: true, Time: h.clock.Now(), Groups: []string{testGroup},
		Applied: map[string]uint64{"group/" + testGroup: d.applied}}
	if d.version != "" || d.target != "" {
		m := report.ModuleStatus{Name: testModule, Version: d.version, State: d.state, Rollout: d.rollout, Target: d.target, Reason: d.reason}
		if d.version == "" {
			m.Version, m.State = d.target, report.StateFailed
		}
		s.Modules = []report.ModuleStatus{m}
	}
	return s
}

func (h *harness) report(d *simDevice) {
	h.t.Helper()
	if err := h.tracker.Status(d.id, h.status(d)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) event(d *simDevice, e report.Event) {
	h.t.Helper()
	e.Device, e.Time = d.id, h.clock.Now()
	if err := h.tracker.Event(d.id, &e); err != nil {
		h.t.Fatal(err)
	}
}

// deliver hands the group's retained desired state to every device, as the broker does to
// an agent subscribed to it, and lets each act on it.
func (h *harness) deliver() {
	h.t.Helper()
	payload := h.broker.retained[report.Topics{}.GroupDesired(testGroup)]
	if payload == nil {
		return
	}
	for _, d := range h.devices {
		if bytes.Equal(payload, d.kept) {
			continue // the retained copy of what it applied
		}
		src := "group/" + testGroup
		if d.does == refuse {
			h.event(d, report.Event{Kind: report.EventRefused, Source: src, Reason: "unknown key", ErrorKind: "unknown-key"})
			d.kept = payload
			continue
		}
		des, err := h.verify(payload, d.applied)
		if err != nil {
			h.refusals = append(h.refusals, d.id+": "+err.Error())
			h.event(d, report.Event{Kind: report.EventRefused, Source: src, Reason: err.Error(), ErrorKind: signing.KindOf(err).Error()})
			d.kept = payload
			continue
		}
		d.applied, d.kept = des.Sequence, payload
		h.act(d, des)
	}
}

// verify is VerifyDesired, with the signature checked once per payload rather than once
// per device (the tests would spend most of their time in ECDSA otherwise).
func (h *harness) verify(payload []byte, applied uint64) (*signing.Desired, error) {
	if h.verified == nil {
		h.verified = map[string]*signing.Desired{}
	}
	d, ok := h.verified[string(payload)]
	if !ok {
		var err error
		if d, err = h.verifier.VerifyDesired(payload, signing.Target{Group: testGroup}, 0); err != nil {
			return nil, err
		}
		h.verified[string(payload)] = d
	}
	if d.Sequence <= applied {
		return nil, &signing.Error{Kind: signing.ErrReplay, Msg: fmt.Sprintf("sequence %d, not above %d already applied", d.Sequence, applied)}
	}
	if !h.clock.Now().Before(d.Expires) {
		return nil, &signing.Error{Kind: signing.ErrExpired, Msg: "expired"}
	}
	return d, nil
}

func (h *harness) act(d *simDevice, des *signing.Desired) {
	var mt *signing.ModuleTarget
	for i := range des.Modules {
		if des.Modules[i].Release.Name == testModule {
			mt = &des.Modules[i]
		}
	}
	if mt == nil {
		if d.version != "" {
			d.version, d.state = "", ""
			h.report(d)
		}
		return
	}
	r := mt.For(d.id)
	if r == nil || r.Version == d.version || r.Version == d.blocked {
		return
	}
	ev := report.Event{Module: testModule, Version: r.Version, Rollout: mt.Rollout, Source: "group/" + testGroup, Sequence: des.Sequence}
	rollback := mt.Rollback && *r == mt.Release
	if err := signing.CheckRollback(d.version, *r, rollback); err != nil {
		h.refusals = append(h.refusals, d.id+": "+err.Error())
		ev.Kind, ev.Reason, ev.ErrorKind = report.EventFailed, err.Error(), "rollback"
		h.event(d, ev)
		d.target, d.reason = r.Version, err.Error()
		h.report(d)
		return
	}
	isNew := *r == h.rel
	switch {
	case d.does == silent:
		return
	case isNew && d.does == failInstall:
		ev.Kind, ev.Reason = report.EventFailed, "download module: connection reset"
		h.event(d, ev)
		d.target, d.reason = r.Version, ev.Reason
	case isNew && d.does == failHealth:
		ev.Kind = report.EventActivated
		h.event(d, ev)
		ev.Kind, ev.Reason, ev.ErrorKind = report.EventRolledBack, "release 1.3.0 failed its health window: 5 of 10 events trapped", "trap"
		h.event(d, ev)
		d.state, d.rollout, d.blocked, d.reason = report.StateRolledBack, mt.Rollout, r.Version, ev.Reason
	default:
		if d.version == h.rel.Version && *r == h.prev {
			h.reverted++
		}
		ev.Kind = report.EventActivated
		h.event(d, ev)
		ev.Kind = report.EventHealthy
		h.event(d, ev)
		d.version, d.state, d.rollout, d.target, d.reason = r.Version, report.StateActive, mt.Rollout, "", ""
	}
	h.report(d)
}

// tick runs one tick and fails the test on an error.
func (h *harness) tick(c *Controller) {
	h.t.Helper()
	if err := c.Tick(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) get(id string) *Rollout {
	h.t.Helper()
	key, _ := objects.RolloutKey(id)
	data, _, err := h.store.Get(context.Background(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	r, err := Parse(data)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// run ticks, delivers and lets a minute pass, until the rollout is final or max ticks.
func (h *harness) run(c *Controller, id string, max int) *Rollout {
	h.t.Helper()
	for range max {
		h.tick(c)
		h.deliver()
		if r := h.get(id); r.State.Final() && r.Published {
			return r
		}
		h.clock.Advance(time.Minute)
	}
	r := h.get(id)
	h.t.Fatalf("rollout %s is still %s (wave %d) after %d ticks", id, r.State, r.Wave+1, max)
	return nil
}

// desiredStates returns the distinct desired states published for the group, in order,
// and fails the test if one sequence was published with two different payloads or if a
// sequence went backwards.
func (h *harness) desiredStates() []*signing.Desired {
	h.t.Helper()
	var out []*signing.Desired
	bySeq := map[uint64][]byte{}
	var last uint64
	for _, p := range h.broker.log {
		d, err := h.verifier.VerifyDesired(p.payload, signing.Target{Group: testGroup}, 0)
		if err != nil {
			h.t.Fatalf("published desired state does not verify: %v", err)
		}
		if prev, ok := bySeq[d.Sequence]; ok {
			if !bytes.Equal(prev, p.payload) {
				h.t.Fatalf("sequence %d published with two different payloads", d.Sequence)
			}
			continue
		}
		if d.Sequence <= last {
			h.t.Fatalf("sequence %d published after %d", d.Sequence, last)
		}
		bySeq[d.Sequence], last = p.payload, d.Sequence
		out = append(out, d)
	}
	return out
}

// percents lists the wave percentage of testModule in each distinct desired state, with
// "R" marking a rollback to prev.
func (h *harness) percents() []string {
	var out []string
	for _, d := range h.desiredStates() {
		for _, m := range d.Modules {
			if m.Release.Name != testModule {
				continue
			}
			s := fmt.Sprint(m.WavePercent)
			if m.Rollback {
				s = "R" + m.Release.Version
			}
			out = append(out, s)
		}
	}
	return out
}

// audits returns the audit records of a rollout by step, failing the test on a duplicate,
// a gap, or a record rewritten with other bytes.
func (h *harness) audits(id string) []AuditRecord {
	h.t.Helper()
	var out []AuditRecord
	for _, k := range h.store.keys(objects.AuditPrefix) {
		rid, step, err := ParseAuditKey(k)
		if err != nil {
			h.t.Fatal(err)
		}
		if rid != id {
			continue
		}
		data, _, _ := h.store.Get(context.Background(), k)
		var rec AuditRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			h.t.Fatal(err)
		}
		if rec.Step != step || rec.Rollout != id {
			h.t.Fatalf("audit %s holds step %d of %s", k, rec.Step, rec.Rollout)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	for i, rec := range out {
		if rec.Step != uint64(i+1) {
			h.t.Fatalf("audit records of %s: step %d where %d was expected (duplicate or gap): %v", id, rec.Step, i+1, steps(out))
		}
	}
	if len(h.store.mismatch) > 0 {
		h.t.Fatalf("audit records written twice with different bytes: %v", h.store.mismatch)
	}
	return out
}

func steps(rs []AuditRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d:%s/w%d", r.Step, r.To, r.Wave+1))
	}
	return out
}

// path is the audit trail as "state/wave" strings.
func path(rs []AuditRecord) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s/%d", r.To, r.Wave+1))
	}
	return strings.Join(out, " ")
}

// members returns the devices in the wave of percent of rollout id.
func (h *harness) members(id string, percent float64) []*simDevice {
	var out []*simDevice
	for _, d := range h.devices {
		if wave.InWave(d.id, id, percent) {
			out = append(out, d)
		}
	}
	return out
}

func (h *harness) on(version string) int {
	n := 0
	for _, d := range h.devices {
		if d.version == version {
			n++
		}
	}
	return n
}
