package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/fetch"
	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/agent/store"
	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/internal/residency"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// onMessage routes a message from the broker: desired state to the updater, anything else
// to the modules whose triggers match. It must not block (paho calls it in order, on one
// goroutine); the message is acknowledged once every module it was queued for has handled
// it, so a crash before that means redelivery, not loss. The broker's copy of a message the
// agent still holds or has handled is not handled again (redeliveries).
func (a *Agent) onMessage(m inbound) {
	if _, ok := a.desiredSource(m.topic); ok {
		// Verified one at a time, in arrival order; acknowledged when applied or refused.
		select {
		case a.desiredIn <- m:
		case <-a.ctx.Done():
		}
		return
	}
	a.mu.Lock()
	var targets []*running
	for _, r := range a.active {
		if r.matches(m.topic) {
			targets = append(targets, r)
		}
	}
	a.mu.Unlock()
	if len(targets) == 0 {
		m.ack()
		return
	}
	ack := a.redelivered.admit(m)
	if ack == nil {
		return // the broker's copy of a message held or handled already
	}
	var pending atomic.Int32
	pending.Store(int32(len(targets)))
	done := func() {
		if pending.Add(-1) == 0 {
			ack()
		}
	}
	for _, r := range targets {
		r.offer(job{ev: sandbox.Event{Topic: m.topic, Payload: m.payload}, done: done})
	}
}

// desiredLoop verifies and applies desired-state messages in the order they arrived, so that
// two documents published back to back are not applied out of order (which would report the
// earlier one as a replay).
func (a *Agent) desiredLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.desiredIn:
			src, _ := a.desiredSource(m.topic)
			a.onDesired(src, m.payload)
			m.ack()
		}
	}
}

// desiredSource maps a desired-state topic to its source name ("group/NAME", "device/ID").
func (a *Agent) desiredSource(name string) (string, bool) {
	if name == a.topics.DeviceDesired(a.cfg.DeviceID) {
		return "device/" + a.cfg.DeviceID, true
	}
	for _, g := range a.cfg.Groups {
		if name == a.topics.GroupDesired(g) {
			return "group/" + g, true
		}
	}
	return "", false
}

func sourceTarget(src string) signing.Target {
	kind, name, _ := strings.Cut(src, "/")
	if kind == "group" {
		return signing.Target{Group: name}
	}
	return signing.Target{Device: name}
}

// desiredPath is where the last applied desired state of a source is kept, so that the
// agent resumes it after a restart and recognises the broker's retained copy of it.
func (a *Agent) desiredPath(src string) string {
	return filepath.Join(a.cfg.DataDir, "desired", strings.ReplaceAll(src, "/", "_")+".dsse.json")
}

// onDesired verifies a desired-state document and, if it is new, applies it.
func (a *Agent) onDesired(src string, payload []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.store.State()
	last := st.Applied[src]
	d, err := (&signing.Verifier{Trust: a.trust}).VerifyDesired(payload, sourceTarget(src), last)
	if err != nil {
		if errors.Is(err, signing.ErrReplay) {
			if kept, rerr := os.ReadFile(a.desiredPath(src)); rerr == nil && bytes.Equal(kept, payload) {
				return // the broker's retained copy of what is already applied
			}
		}
		a.log.Warn().Err(err).Str("source", src).Msg("desired state refused")
		a.lastError = fmt.Sprintf("desired state from %s refused: %v", src, err)
		a.eventLocked(report.Event{Kind: report.EventRefused, Source: src, Reason: err.Error(), ErrorKind: kindOf(err)})
		a.statusChanged()
		return
	}
	if err := os.MkdirAll(filepath.Dir(a.desiredPath(src)), 0o700); err == nil {
		err = atomicfile.Write(a.desiredPath(src), payload, 0o600)
		if err != nil {
			a.log.Error().Err(err).Msg("keep desired state")
		}
	}
	if err := a.store.Update(func(s *store.State) error {
		if s.Applied == nil {
			s.Applied = map[string]uint64{}
		}
		s.Applied[src] = d.Sequence
		return nil
	}); err != nil {
		a.log.Error().Err(err).Msg("record applied desired state")
		return
	}
	a.sources[src] = d
	a.log.Info().Str("source", src).Uint64("sequence", d.Sequence).Int("modules", len(d.Modules)).Msg("desired state applied")
	a.reconcileLater()
}

// target is what one module should run, and why.
type target struct {
	ref      signing.ReleaseRef
	rollback bool
	rollout  string
	source   string
	sequence uint64
}

// targetsLocked merges the sources: the device's own desired state pins modules over its
// groups', and earlier groups in the config win over later ones.
func (a *Agent) targetsLocked() map[string]target {
	out := map[string]target{}
	order := []string{"device/" + a.cfg.DeviceID}
	for _, g := range a.cfg.Groups {
		order = append(order, "group/"+g)
	}
	for _, src := range order {
		d := a.sources[src]
		if d == nil {
			continue
		}
		for _, m := range d.Modules {
			ref := m.For(a.cfg.DeviceID)
			if ref == nil {
				continue
			}
			if _, ok := out[ref.Name]; ok {
				continue
			}
			out[ref.Name] = target{ref: *ref, rollback: m.Rollback && *ref == m.Release, rollout: m.Rollout, source: src, sequence: d.Sequence}
		}
	}
	return out
}

func (a *Agent) reconcileLater() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// updater reconciles what runs with what is desired whenever something changes, and when a
// failed install is due for another attempt.
func (a *Agent) updater(ctx context.Context) {
	a.loadKeptDesired()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		next := a.reconcile(ctx)
		if !next.IsZero() {
			retry.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-retry.C:
		}
	}
}

// refusal is a target that failed for good: the release or module did not verify, or the
// desired state did not allow it. It is not tried again while the same desired state names
// the same release.
type refusal struct {
	ref      signing.ReleaseRef
	rollback bool
	source   string
	sequence uint64
}

func refusalOf(t target) refusal { return refusal{t.ref, t.rollback, t.source, t.sequence} }

// backoff is when a module's failed install may be tried again, and how long the wait after
// the next failure will be.
type backoff struct {
	at   time.Time
	wait time.Duration
}

const (
	retryMin = 2 * time.Second
	retryMax = 5 * time.Minute
)

// loadKeptDesired resumes the desired state applied before a restart.
func (a *Agent) loadKeptDesired() {
	st := a.store.State()
	a.mu.Lock()
	defer a.mu.Unlock()
	for src, seq := range st.Applied {
		raw, err := os.ReadFile(a.desiredPath(src))
		if err != nil {
			continue
		}
		d, err := (&signing.Verifier{Trust: a.trust}).VerifyDesired(raw, sourceTarget(src), seq-1)
		if err != nil || d.Sequence != seq {
			a.log.Warn().Err(err).Str("source", src).Msg("kept desired state no longer applies")
			continue
		}
		if _, ok := a.sources[src]; !ok {
			a.sources[src] = d
		}
	}
	a.reconcileLater()
}

// reconcile starts an install for each module whose target is not what runs, and removes
// modules no source wants any more. It returns when a failed install is next due (zero if
// none is waiting).
func (a *Agent) reconcile(ctx context.Context) (next time.Time) {
	now := time.Now()
	a.mu.Lock()
	targets := a.targetsLocked()
	st := a.store.State()
	var clear []string
	for name, t := range targets {
		ms, installed := st.Modules[name]
		if installed && ms.Active == t.ref {
			if ms.Failed != nil {
				clear = append(clear, name) // the desired state is back on what runs
			}
			delete(a.retry, name)
			delete(a.refused, name)
			continue
		}
		if installed && ms.Blocked != nil && *ms.Blocked == t.ref {
			continue // rolled back from it; wait for a different target
		}
		if r, ok := a.refused[name]; ok && r == refusalOf(t) {
			continue // refused for good under this very desired state: reported already
		}
		if b, ok := a.retry[name]; ok && now.Before(b.at) {
			if next.IsZero() || b.at.Before(next) {
				next = b.at
			}
			continue
		}
		if a.installing[name] {
			continue
		}
		a.installing[name] = true
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.collecting.RLock()
			permanent, err := a.install(ctx, name, t)
			a.collecting.RUnlock()
			a.mu.Lock()
			delete(a.installing, name)
			switch {
			case err == nil:
				delete(a.retry, name)
				delete(a.refused, name)
			case permanent:
				a.refused[name] = refusalOf(t)
				delete(a.retry, name)
			default:
				b := a.retry[name]
				b.wait = min(max(b.wait*2, retryMin), retryMax)
				b.at = time.Now().Add(jitter(b.wait))
				a.retry[name] = b
			}
			a.mu.Unlock()
			a.reconcileLater()
		}()
	}
	// A module is removed when the source that installed it no longer names it.
	var remove []string
	for name, ms := range st.Modules {
		if _, wanted := targets[name]; wanted {
			continue
		}
		if _, known := a.sources[ms.Source]; known || ms.Source == "" {
			remove = append(remove, name)
		}
	}
	a.mu.Unlock()
	for _, name := range clear {
		if err := a.store.Update(func(s *store.State) error {
			ms := s.Modules[name]
			ms.Failed, ms.Permanent = nil, false
			if ms.Status == report.StateFailed {
				ms.Status, ms.Reason = report.StateActive, ""
			}
			s.Modules[name] = ms
			return nil
		}); err != nil {
			a.log.Error().Err(err).Msg("clear failure")
		}
		a.statusChanged()
	}
	for _, name := range remove {
		a.remove(name)
	}
	return next
}

// install fetches, verifies and activates one module's target. The running version keeps
// handling events meanwhile.
func (a *Agent) install(ctx context.Context, name string, t target) (permanent bool, err error) {
	log := a.log.With().Str("module", name).Str("version", t.ref.Version).Str("rollout", t.rollout).Logger()
	ev := report.Event{Module: name, Version: t.ref.Version, Rollout: t.rollout, Source: t.source, Sequence: t.sequence}
	fail := func(err error, perm bool) (bool, error) {
		permanent := perm
		log.Warn().Err(err).Bool("permanent", permanent).Msg("install failed")
		e := ev
		e.Kind, e.Reason, e.ErrorKind = report.EventFailed, err.Error(), kindOf(err)
		a.event(e)
		a.mu.Lock()
		a.lastError = fmt.Sprintf("%s %s: %v", name, t.ref.Version, err)
		a.mu.Unlock()
		if uerr := a.store.Update(func(s *store.State) error {
			ms := s.Modules[name]
			ref := t.ref
			ms.Failed, ms.Permanent, ms.Reason = &ref, permanent, err.Error()
			if ms.Active.Name == "" {
				ms.Status = report.StateFailed
			}
			s.Modules[name] = ms
			return nil
		}); uerr != nil {
			log.Error().Err(uerr).Msg("record failure")
		}
		a.statusChanged()
		return permanent, err
	}

	e := ev
	e.Kind = report.EventDownloading
	a.event(e)
	a.statusChanged()

	// A release may be signed by keys of a newer trust file than the device holds.
	a.refreshTrust(ctx)

	// The release: fetched, verified against the trust file, and matched with the target.
	key, err := objects.ReleaseKey(t.ref.Name, t.ref.Version)
	if err != nil {
		return fail(err, true)
	}
	envelope, err := a.fetcher.Get(ctx, key, signing.MaxEnvelopeSize)
	if err != nil {
		return fail(fmt.Errorf("fetch release: %w", err), false)
	}
	a.mu.Lock()
	v := &signing.Verifier{Trust: a.trust}
	installed := a.store.State().Modules[name].Active.Version
	a.mu.Unlock()
	rel, err := v.VerifyRelease(envelope)
	if err != nil {
		return fail(fmt.Errorf("verify release: %w", err), true)
	}
	if err := signing.CheckRelease(t.ref, rel); err != nil {
		return fail(err, true)
	}
	if err := signing.CheckRollback(installed, t.ref, t.rollback); err != nil {
		return fail(err, true)
	}
	if limit := a.maxModuleSize(); rel.Size > limit {
		return fail(fmt.Errorf("%w: module is %d bytes, this device accepts at most %d (policy.max_module_size)", sandbox.ErrModuleTooLarge, rel.Size, limit), true)
	}

	// The module: downloaded into *.unverified (resuming what an earlier attempt left),
	// checked against the signed digest and size, and only then moved into the store.
	if !a.store.HasBlob(rel.SHA256) {
		if permanent, err := a.fetchModule(ctx, log, t.ref, rel); err != nil {
			return fail(err, permanent)
		}
	}
	wasm, err := a.store.Blob(rel.SHA256)
	if err != nil {
		return fail(err, false)
	}
	if err := a.store.PutRelease(t.ref, envelope); err != nil {
		return fail(err, false)
	}
	e = ev
	e.Kind = report.EventVerified
	a.event(e)

	mod, err := a.rt.Load(ctx, wasm, rel.Manifest)
	if err != nil {
		return fail(fmt.Errorf("load: %w", err), true)
	}
	// A version the desired state explicitly rolls back to is not judged: it is where the
	// fleet retreats to, and failing its window would roll forward to the bad release.
	a.activate(name, t, mod, !t.rollback)
	return false, nil
}

// fetchModule downloads the module of rel into the store's *.unverified file, resuming what
// an earlier attempt (or an earlier run of the agent) left there, checks it against the
// signed digest and size, and commits it to the store.
//
// A resumed download that does not verify is fetched once more from the start, in the same
// call: the bytes kept from before may be what is wrong (a power cut can leave a file whose
// tail never reached the disk), not the object in the bucket. Only a download that started
// from nothing and still does not verify is refused for good.
func (a *Agent) fetchModule(ctx context.Context, log zerolog.Logger, ref signing.ReleaseRef, rel *signing.Release) (permanent bool, err error) {
	mkey, err := objects.ModuleKey(ref.Name, ref.Version)
	if err != nil {
		return true, err
	}
	for fresh := false; ; fresh = true {
		path, have, err := a.store.Partial(rel.SHA256)
		if err != nil {
			return false, err
		}
		if rerr := a.store.CheckRoom(int64(rel.Size), have); rerr != nil {
			// Not downloaded at all: a module that cannot fit costs no bandwidth. What an
			// earlier attempt downloaded is kept for when there is room, unless it eats
			// into the reserve the state and kv writes need; an empty file goes.
			err := fmt.Errorf("download module: the module (%d bytes) does not fit: %w", rel.Size, rerr)
			var nr *store.NoRoomError
			if have == 0 || errors.As(rerr, &nr) && nr.Free < store.RoomReserve {
				if derr := a.store.DropPartial(rel.SHA256); derr != nil {
					err = fmt.Errorf("%w (and removing the partial download: %v)", err, derr)
				}
			}
			return false, err
		}
		stats, err := a.fetcher.Download(ctx, mkey, path, int64(rel.Size))
		if err != nil && diskFull(err) {
			// The partial download would keep the disk full, and with it every other write
			// (the state, the kv buckets, compiled code): give the space back. The next
			// attempt starts over.
			if derr := a.store.DropPartial(rel.SHA256); derr != nil {
				return false, fmt.Errorf("download module: the data directory is full: %w (and removing the partial download: %v)", err, derr)
			}
			return false, fmt.Errorf("download module: the data directory is full (the module is %d bytes); removed the partial download: %w", rel.Size, err)
		}
		if err != nil {
			return isPermanentFetch(err), downloadError(err)
		}
		log.Debug().Int64("bytes", stats.BytesFetched).Int64("kept", stats.Existing).Int("attempts", stats.Attempts).Msg("module downloaded")
		f, err := os.Open(path)
		if err != nil {
			return false, err
		}
		verr := rel.VerifyModule(f)
		f.Close()
		if verr == nil {
			return false, a.store.CommitBlob(rel.SHA256)
		}
		if err := a.store.DropPartial(rel.SHA256); err != nil {
			return false, fmt.Errorf("verify module: %w (and removing the download: %v)", verr, err)
		}
		if stats.Existing == 0 || fresh {
			return true, fmt.Errorf("verify module: %w", verr)
		}
		log.Warn().Err(verr).Int64("kept", stats.Existing).Msg("a resumed download does not verify; fetching the module again from the start")
	}
}

// diskFull reports whether err is a write refused for want of room: the file system is full
// (ENOSPC), a quota is reached (EDQUOT) or the file size limit (EFBIG, RLIMIT_FSIZE).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// isPermanentFetch tells the download failures that another attempt will not fix: the
// object is missing, forbidden, or not the signed size (not the module the release signed).
func isPermanentFetch(err error) bool {
	return errors.Is(err, fetch.ErrNotFound) || errors.Is(err, fetch.ErrAccessDenied) ||
		errors.Is(err, fetch.ErrTooLarge) || errors.Is(err, fetch.ErrTooSmall) || errors.Is(err, fetch.ErrDigestMismatch)
}

// downloadError classifies a module that is not the signed size as the trust refusal it
// is: more bytes than signed is endless data, fewer is another module.
func downloadError(err error) error {
	switch {
	case errors.Is(err, fetch.ErrTooLarge):
		return &signing.Error{Kind: signing.ErrTooLarge, Msg: "download module: more bytes than the release signed", Err: err}
	case errors.Is(err, fetch.ErrTooSmall), errors.Is(err, fetch.ErrDigestMismatch):
		return &signing.Error{Kind: signing.ErrDigest, Msg: "download module: not the module the release signed", Err: err}
	}
	return fmt.Errorf("download module: %w", err)
}

// activate switches a module to a loaded version. Events already queued or running finish
// on the old version; new ones go to the new. With judge set, the new version is watched
// for a health window and rolled back if it fails it.
func (a *Agent) activate(name string, t target, mod *sandbox.Module, judge bool) {
	a.mu.Lock()
	old := a.active[name]
	st := a.store.State()
	prevState := st.Modules[name]
	var previous *signing.ReleaseRef
	if prevState.Active.Name != "" && prevState.Active != t.ref {
		p := prevState.Active
		previous = &p
	}
	r := startRunning(t.ref, mod, a.cfg.DeviceID, a.cfg.Queue.Depth, a.log, a.publishOutput, a.outcome)
	status := report.StateActive
	if judge && previous != nil {
		status = report.StateHealthCheck
		r.health = newHealth(a.cfg.Health.Events, time.Duration(a.cfg.Health.Window), a.cfg.Health.MaxFailureRatio)
	}
	a.active[name] = r
	err := a.store.Update(func(s *store.State) error {
		ms := s.Modules[name]
		ms.Active, ms.Source, ms.Rollout, ms.Status, ms.Since = t.ref, t.source, t.rollout, status, time.Now()
		ms.Reason, ms.Failed, ms.Permanent = "", nil, false
		if previous != nil {
			ms.Previous = previous
		}
		ms.Healthy = status == report.StateActive
		if s.Modules == nil {
			s.Modules = map[string]store.ModuleState{}
		}
		s.Modules[name] = ms
		return nil
	})
	a.mu.Unlock()
	if err != nil {
		a.log.Error().Err(err).Str("module", name).Msg("record activation")
	}
	a.updateFilters()
	go a.retire(old)
	a.event(report.Event{Kind: report.EventActivated, Module: name, Version: t.ref.Version, Rollout: t.rollout, Source: t.source, Sequence: t.sequence})
	a.log.Info().Str("module", name).Str("version", t.ref.Version).Str("state", status).Msg("module activated")
	a.statusChanged()
	if r.health != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.judge(name, r, t) }()
	}
}

// retire stops a version that was replaced (if any), once its queued and running events are
// done, and then asks the trimmer to hand the memory it and the new version's compilation
// freed back to the OS.
func (a *Agent) retire(r *running) {
	if r != nil {
		r.stop()
	}
	a.trimSoon()
}

// trimSoon asks the trimmer for a pass; requests made while one is pending are one pass.
func (a *Agent) trimSoon() {
	select {
	case a.trimDue <- struct{}{}:
	default:
	}
}

// trimmer hands memory back to the OS after installs, rollbacks and the restore at start,
// one pass at a time however many ask. Compiling a module leaves garbage several times its
// size (a Go module: some 60 MiB, TestIdleFootprint), which the Go runtime would otherwise
// return only over minutes; a device may well need it sooner. So are the agent's own code
// pages that verifying, downloading and compiling ran (residency.ReleaseCode), which the
// kernel would otherwise leave mapped for the life of the process.
func (a *Agent) trimmer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.trimDue:
		}
		debug.FreeOSMemory()
		released, err := residency.ReleaseCode()
		if err != nil {
			a.log.Warn().Err(err).Msg("release code pages")
			continue
		}
		a.log.Debug().Int64("bytes", released).Msg("released code pages")
	}
}

// judge waits for a health window's verdict and acts on it.
func (a *Agent) judge(name string, r *running, t target) {
	timer := time.NewTimer(time.Until(r.health.deadline))
	defer timer.Stop()
	var v verdict
	select {
	case v = <-r.health.verdict:
	case <-timer.C:
		r.health.expire()
		v = <-r.health.verdict
	case <-a.ctx.Done():
		return
	}
	a.mu.Lock()
	current := a.active[name]
	a.mu.Unlock()
	if current != r {
		return // replaced meanwhile
	}
	if v.healthy {
		a.markHealthy(name, r, t)
		return
	}
	a.rollback(name, r, t, v)
}

func (a *Agent) markHealthy(name string, r *running, t target) {
	if err := a.store.Update(func(s *store.State) error {
		ms := s.Modules[name]
		if ms.Active != r.ref {
			return nil
		}
		ms.Healthy, ms.Status, ms.Previous = true, report.StateActive, nil
		s.Modules[name] = ms
		return nil
	}); err != nil {
		a.log.Error().Err(err).Msg("record healthy")
	}
	a.event(report.Event{Kind: report.EventHealthy, Module: name, Version: t.ref.Version, Rollout: t.rollout, Source: t.source})
	a.statusChanged()
	a.gc()
}

// rollback returns a module to the release it ran before a failed health window.
func (a *Agent) rollback(name string, bad *running, t target, v verdict) {
	st := a.store.State()
	ms := st.Modules[name]
	log := a.log.With().Str("module", name).Str("version", t.ref.Version).Logger()
	if ms.Previous == nil {
		log.Error().Str("reason", v.reason).Msg("release failed its health window and there is nothing to roll back to")
		return
	}
	prev := *ms.Previous
	mod, err := a.loadStored(prev)
	if err != nil {
		log.Error().Err(err).Msg("cannot load the previous release; keeping the failing one")
		a.event(report.Event{Kind: report.EventFailed, Module: name, Version: prev.Version, Reason: "roll back: " + err.Error()})
		return
	}
	a.mu.Lock()
	r := startRunning(prev, mod, a.cfg.DeviceID, a.cfg.Queue.Depth, a.log, a.publishOutput, a.outcome)
	a.active[name] = r
	reason := "release " + t.ref.Version + " failed its health window: " + v.reason
	err = a.store.Update(func(s *store.State) error {
		m := s.Modules[name]
		blocked := t.ref
		m.Active, m.Previous, m.Blocked, m.Healthy, m.Status, m.Reason, m.Since = prev, nil, &blocked, true, report.StateRolledBack, reason, time.Now()
		s.Modules[name] = m
		return nil
	})
	a.lastError = name + ": " + reason
	a.mu.Unlock()
	if err != nil {
		log.Error().Err(err).Msg("record rollback")
	}
	a.updateFilters()
	go a.retire(bad)
	log.Warn().Str("to", prev.Version).Str("reason", v.reason).Msg("rolled back")
	a.event(report.Event{Kind: report.EventRolledBack, Module: name, Version: t.ref.Version, Rollout: t.rollout, Source: t.source,
		Reason: reason, ErrorKind: v.kind})
	a.statusChanged()
}

// loadStored compiles a release kept in the store, checking its signatures again.
func (a *Agent) loadStored(ref signing.ReleaseRef) (*sandbox.Module, error) {
	env, err := a.store.Release(ref)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	v := &signing.Verifier{Trust: a.trust}
	a.mu.Unlock()
	rel, err := v.VerifyRelease(env)
	if err != nil {
		return nil, fmt.Errorf("stored release %s: %w", ref, err)
	}
	if err := signing.CheckRelease(ref, rel); err != nil {
		return nil, err
	}
	wasm, err := a.store.Blob(ref.SHA256)
	if err != nil {
		return nil, err
	}
	return a.rt.Load(a.ctx, wasm, rel.Manifest)
}

// restore starts the modules that were active before the agent stopped, from the store.
func (a *Agent) restore(ctx context.Context) {
	st := a.store.State()
	names := make([]string, 0, len(st.Modules))
	for n := range st.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ms := st.Modules[name]
		if ms.Active.Name == "" {
			continue
		}
		mod, err := a.loadStored(ms.Active)
		if err != nil {
			a.log.Error().Err(err).Str("module", name).Msg("cannot restore module")
			a.lastError = fmt.Sprintf("restore %s: %v", name, err)
			continue
		}
		r := startRunning(ms.Active, mod, a.cfg.DeviceID, a.cfg.Queue.Depth, a.log, a.publishOutput, a.outcome)
		t := target{ref: ms.Active, rollout: ms.Rollout, source: ms.Source}
		if !ms.Healthy && ms.Previous != nil {
			// Stopped inside a health window: judge it again from the start.
			r.health = newHealth(a.cfg.Health.Events, time.Duration(a.cfg.Health.Window), a.cfg.Health.MaxFailureRatio)
			a.wg.Add(1)
			go func() { defer a.wg.Done(); a.judge(name, r, t) }()
		}
		a.mu.Lock()
		a.active[name] = r
		a.mu.Unlock()
		a.log.Info().Str("module", name).Str("version", ms.Active.Version).Msg("module restored")
	}
	a.trimSoon()
	_ = ctx
}

// remove stops a module no source wants any more.
func (a *Agent) remove(name string) {
	a.mu.Lock()
	r := a.active[name]
	delete(a.active, name)
	err := a.store.Update(func(s *store.State) error {
		delete(s.Modules, name)
		return nil
	})
	a.mu.Unlock()
	if err != nil {
		a.log.Error().Err(err).Msg("record removal")
	}
	a.updateFilters()
	if r != nil {
		r.stop()
	}
	a.log.Info().Str("module", name).Msg("module removed")
	a.statusChanged()
	a.gc()
}

// updateFilters subscribes to the desired-state topics and every active trigger.
func (a *Agent) updateFilters() {
	filters := []string{a.topics.DeviceDesired(a.cfg.DeviceID)}
	for _, g := range a.cfg.Groups {
		filters = append(filters, a.topics.GroupDesired(g))
	}
	a.mu.Lock()
	for _, r := range a.active {
		filters = append(filters, r.filters...)
	}
	a.mu.Unlock()
	slices.Sort(filters)
	filters = slices.Compact(filters)
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	a.sess.setFilters(ctx, filters)
}

// outcome is called after every event of every running version.
func (a *Agent) outcome(r *running, err error) {
	if r.health != nil {
		r.health.record(err)
	}
}

// publishOutput sends a handler's publish through the outbox.
func (a *Agent) publishOutput(m sandbox.Message) {
	a.sess.publish(m.Topic, m.Payload, false)
}

// gc removes blobs and releases no module refers to any more, and their compiled code. It
// waits for a quiet moment: while an install runs, its download, its not yet activated blob
// and its compiled code must stay (collecting keeps installs and gc apart).
func (a *Agent) gc() {
	if !a.collecting.TryLock() {
		return // an install is running; the next gc collects
	}
	defer a.collecting.Unlock()
	a.mu.Lock()
	busy := len(a.installing) > 0
	a.mu.Unlock()
	if busy {
		return // about to start: it would wait for this gc, but need not
	}
	if n, err := a.store.GC(nil); err != nil {
		a.log.Warn().Err(err).Msg("collect unused blobs")
	} else if n > 0 {
		a.log.Debug().Int("removed", n).Msg("collected unused blobs")
	}
	// The compiled code of the same releases.
	if n, err := a.rt.RetainCompiled(a.store.State().Kept()); err != nil {
		a.log.Warn().Err(err).Msg("collect unused compiled code")
	} else if n > 0 {
		a.log.Debug().Int("removed", n).Msg("collected unused compiled code")
	}
}

// maxModuleSize is the largest module this device downloads: the policy's, or the sandbox's
// default.
func (a *Agent) maxModuleSize() uint64 {
	if n := uint64(a.cfg.Policy.MaxModuleSize); n > 0 {
		return n
	}
	return sandbox.DefaultMaxModuleSize
}

// refreshTrust fetches the bucket's trust file and, when it is the next version of the one
// the device holds and verifies under both (signing.Trust.Rotate), moves to it and keeps it
// in the store, so that a restart starts from it. Any failure leaves the trust as it was:
// an older, equal or unverifiable trust file is never adopted.
func (a *Agent) refreshTrust(ctx context.Context) {
	data, err := a.fetcher.Get(ctx, objects.TrustKey, signing.MaxEnvelopeSize)
	if err != nil {
		if !errors.Is(err, fetch.ErrNotFound) {
			a.log.Debug().Err(err).Msg("fetch trust file")
		}
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.trust
	next, err := cur.Rotate(data, time.Now())
	switch {
	case err != nil && errors.Is(err, signing.ErrReplay):
		return // the bucket's is not newer than ours
	case err != nil:
		a.log.Warn().Err(err).Uint64("held", cur.Version()).Msg("trust file in the bucket refused")
		a.lastError = "trust file in the bucket refused: " + err.Error()
		return
	case next.Version() <= cur.Version():
		return
	}
	if err := a.store.PutTrust(data); err != nil {
		a.log.Error().Err(err).Msg("keep rotated trust file")
		return
	}
	a.trust = next
	a.log.Info().Uint64("from", cur.Version()).Uint64("to", next.Version()).Msg("trust file rotated")
	a.statusChanged()
}
