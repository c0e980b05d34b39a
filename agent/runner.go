package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
	"github.com/wasmfleet/wasmfleet/signing"
)

// job is one event for one module version. done is called exactly once, when the event
// has been handled or dropped; for an MQTT message it counts towards the message's ack.
type job struct {
	ev   sandbox.Event
	done func()
}

// running is one version of one module, activated: its compiled module, its queue and
// workers, its interval triggers and its counters. A version never changes; activating
// another version of the module starts a new running and stops this one, whose queued and
// in-flight events finish on it.
type running struct {
	ref     signing.ReleaseRef
	mod     *sandbox.Module
	filters []string // MQTT trigger filters, {device} expanded
	log     zerolog.Logger

	queue   chan job
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup // workers and tickers

	dropped     atomic.Uint64
	invocations atomic.Uint64
	failures    atomic.Uint64
	lat         latencies

	// health, when set, is the window this version is being judged in.
	health *health
	// publish sends a handler's output; report receives each event's outcome.
	publish func(sandbox.Message)
	outcome func(r *running, err error)
}

// startRunning starts the workers and interval triggers of a loaded module.
func startRunning(ref signing.ReleaseRef, mod *sandbox.Module, device string, depth int, log zerolog.Logger,
	publish func(sandbox.Message), outcome func(*running, error)) *running {
	m := mod.Manifest()
	r := &running{
		ref: ref, mod: mod, log: log.With().Str("module", m.Name).Str("version", m.Version).Logger(),
		queue: make(chan job, depth), closing: make(chan struct{}),
		publish: publish, outcome: outcome,
	}
	for _, t := range m.Triggers {
		if t.MQTT != "" {
			r.filters = append(r.filters, topic.Expand(t.MQTT, device))
		}
	}
	workers := mod.Limits().Concurrency
	for range workers {
		r.wg.Add(1)
		go r.work()
	}
	for _, t := range m.Triggers {
		if t.Every > 0 {
			r.wg.Add(1)
			go r.tick(time.Duration(t.Every))
		}
	}
	return r
}

// matches reports whether an MQTT message on name is for this module.
func (r *running) matches(name string) bool {
	for _, f := range r.filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// offer queues an event without waiting; a full queue drops it, counted. It reports whether
// the event was queued (if not, done has been called).
func (r *running) offer(j job) bool {
	select {
	case <-r.closing:
	default:
		select {
		case r.queue <- j:
			return true
		default:
		}
	}
	r.dropped.Add(1)
	j.done()
	return false
}

func (r *running) work() {
	defer r.wg.Done()
	for {
		// Drain what is queued even after stop: those events were accepted for this version.
		select {
		case j := <-r.queue:
			r.handle(j)
			continue
		default:
		}
		select {
		case j := <-r.queue:
			r.handle(j)
		case <-r.closing:
			for {
				select {
				case j := <-r.queue:
					r.handle(j)
				default:
					return
				}
			}
		}
	}
}

func (r *running) handle(j job) {
	defer j.done()
	start := time.Now()
	// Handle bounds itself by the module's deadline; the agent's shutdown does not cut an
	// event short, it waits for it.
	res, err := r.mod.Handle(context.Background(), j.ev)
	r.lat.add(time.Since(start))
	r.invocations.Add(1)
	if err != nil {
		r.failures.Add(1)
		r.log.Debug().Err(err).Str("topic", j.ev.Topic).Msg("event failed")
	} else {
		for _, m := range res.Publishes {
			r.publish(m)
		}
	}
	r.outcome(r, err)
}

func (r *running) tick(every time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.offer(job{done: func() {}})
		case <-r.closing:
			return
		}
	}
}

// stop refuses new events, waits for the queued and in-flight ones, and releases the
// module.
func (r *running) stop() {
	r.once.Do(func() { close(r.closing) })
	r.wg.Wait()
	if err := r.mod.Close(context.Background()); err != nil {
		r.log.Warn().Err(err).Msg("close module")
	}
}

// latencies keeps the last few hundred event durations for percentiles.
type latencies struct {
	mu   sync.Mutex
	ring [512]time.Duration
	n    int
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ring[l.n%len(l.ring)] = d
	l.n++
	l.mu.Unlock()
}

// percentiles returns the 50th and 99th percentile of the kept durations.
func (l *latencies) percentiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	n := min(l.n, len(l.ring))
	d := slices.Clone(l.ring[:n])
	l.mu.Unlock()
	if n == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[(n-1)*50/100], d[(n-1)*99/100]
}

// health judges a freshly activated version: after Events events, or when Window has passed,
// it is unhealthy if more than MaxRatio of its events failed. It decides early once the
// failures alone settle it.
type health struct {
	events   int
	ratio    float64
	deadline time.Time

	mu       sync.Mutex
	total    int
	failed   int
	byKind   map[string]int
	decided  bool
	verdict  chan verdict // receives exactly one verdict
	lastFail error
}

// verdict is the end of a health window.
type verdict struct {
	healthy bool
	reason  string
	kind    string // the commonest error kind, when unhealthy
}

func newHealth(events int, window time.Duration, ratio float64) *health {
	return &health{events: events, ratio: ratio, deadline: time.Now().Add(window),
		byKind: map[string]int{}, verdict: make(chan verdict, 1)}
}

// record counts one event's outcome.
func (h *health) record(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.decided {
		return
	}
	h.total++
	if err != nil {
		h.failed++
		h.byKind[sandbox.Kind(err)]++
		h.lastFail = err
	}
	switch {
	case float64(h.failed) > h.ratio*float64(h.events):
		// Even if every remaining event of the window succeeded, the ratio is crossed.
		h.decideLocked()
	case h.total >= h.events:
		h.decideLocked()
	}
}

// expire ends the window by time.
func (h *health) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.decided {
		h.decideLocked()
	}
}

func (h *health) decideLocked() {
	h.decided = true
	v := verdict{healthy: true}
	if h.total > 0 && float64(h.failed)/float64(h.total) > h.ratio {
		kind, most := "", 0
		for k, n := range h.byKind {
			if n > most || n == most && k < kind {
				kind, most = k, n
			}
		}
		v = verdict{kind: kind, reason: failureReason(h.failed, h.total, h.ratio, kind, h.lastFail)}
	}
	h.verdict <- v
}

func failureReason(failed, total int, ratio float64, kind string, last error) string {
	msg := pluralEvents(failed, total) + " failed, more than the " + percent(ratio) + " allowed; most often " + kind
	if last != nil {
		var text = last.Error()
		if len(text) > 200 {
			text = text[:200]
		}
		msg += " (last: " + text + ")"
	}
	return msg
}

var errStopped = errors.New("agent stopped")
