package dashboard

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
)

// The overview's chart: events and failures per second per module over the last
// rateBuckets × rateWidth.
const (
	rateWidth   = 5 * time.Second
	rateBuckets = 60
	// rateRecent is how many of the last complete buckets the current figure averages.
	rateRecent = 12
)

// rates turns the counters in the devices' statuses (invocations and failures per module,
// counted by the agent since the module started) into events per second per module.
// Statuses come every status interval (a minute by default), so each increase is spread
// evenly over the time since the device's previous status: the chart is smooth, and lags
// by up to one status interval. A counter that went down (the agent restarted, or a new
// version started) counts from zero. It is safe for concurrent use.
type rates struct {
	now func() time.Time

	mu      sync.Mutex
	last    map[string]map[string]counter // device → module → last counter
	modules map[string]*series
}

type counter struct {
	version     string
	invocations uint64
	failures    uint64
	at          time.Time
}

// series is a ring of buckets; slot i holds bucket idx[i] (a bucket is unix time /
// rateWidth).
type series struct {
	idx      [rateBuckets]int64
	events   [rateBuckets]float64
	failures [rateBuckets]float64
}

func newRates(now func() time.Time) *rates {
	return &rates{now: now, last: map[string]map[string]counter{}, modules: map[string]*series{}}
}

// observe takes one report from the controller's Fleet.
func (r *rates) observe(rep controller.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case rep.Cleared:
		delete(r.last, rep.Device)
		return
	case rep.Status == nil:
		return // an event
	case !rep.Status.Online && len(rep.Status.Modules) == 0:
		return // a last will: the counters will start again from zero
	}
	at := rep.Received
	prev := r.last[rep.Device]
	next := make(map[string]counter, len(rep.Status.Modules))
	for _, m := range rep.Status.Modules {
		c := counter{version: m.Version, invocations: m.Invocations, failures: m.Failures, at: at}
		next[m.Name] = c
		p, ok := prev[m.Name]
		if !ok {
			continue // first sight: the counter says nothing about the last interval
		}
		ev, fl := c.invocations, c.failures
		if p.version == c.version && c.invocations >= p.invocations && c.failures >= p.failures {
			ev, fl = c.invocations-p.invocations, c.failures-p.failures
		}
		if ev == 0 && fl == 0 {
			r.series(m.Name) // the module is there, at zero
			continue
		}
		r.spread(r.series(m.Name), p.at, at, float64(ev), float64(fl))
	}
	r.last[rep.Device] = next
}

func (r *rates) series(module string) *series {
	s := r.modules[module]
	if s == nil {
		s = &series{}
		for i := range s.idx {
			s.idx[i] = -1
		}
		r.modules[module] = s
	}
	return s
}

func bucketOf(t time.Time) int64 { return t.UnixNano() / int64(rateWidth) }

// spread adds ev events and fl failures evenly over (from, to].
func (r *rates) spread(s *series, from, to time.Time, ev, fl float64) {
	if !to.After(from) {
		from = to.Add(-time.Millisecond)
	}
	total := to.Sub(from)
	// What falls before the window is dropped.
	if oldest := time.Unix(0, (bucketOf(to)-rateBuckets+1)*int64(rateWidth)); from.Before(oldest) {
		keep := float64(to.Sub(oldest)) / float64(total)
		ev, fl, from, total = ev*keep, fl*keep, oldest, to.Sub(oldest)
	}
	for b := bucketOf(from); b <= bucketOf(to); b++ {
		start := time.Unix(0, b*int64(rateWidth))
		end := start.Add(rateWidth)
		lo, hi := start, end
		if from.After(lo) {
			lo = from
		}
		if to.Before(hi) {
			hi = to
		}
		if !hi.After(lo) {
			continue
		}
		share := float64(hi.Sub(lo)) / float64(total)
		slot := int(b % rateBuckets)
		if s.idx[slot] != b {
			s.idx[slot], s.events[slot], s.failures[slot] = b, 0, 0
		}
		s.events[slot] += ev * share
		s.failures[slot] += fl * share
	}
}

// rateView is one module's line of the chart.
type rateView struct {
	Module string
	// Events and Failures are per second, averaged over the last minute.
	Events, Failures string
	// EventPoints and FailurePoints are an SVG polyline's points in a 120×30 box.
	EventPoints, FailurePoints string
	// Peak is the highest events per second in the window.
	Peak string
}

// chart is every module's rates now, sorted by module name. Modules with no bucket in the
// window and no device reporting them are dropped.
func (r *rates) chart() []rateView {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := bucketOf(r.now())
	reported := map[string]bool{}
	for _, ms := range r.last {
		for m := range ms {
			reported[m] = true
		}
	}
	out := make([]rateView, 0, len(r.modules))
	for name, s := range r.modules {
		var ev, fl [rateBuckets]float64
		seen := false
		for i := range rateBuckets {
			b := cur - rateBuckets + 1 + int64(i)
			slot := int(b % rateBuckets)
			if s.idx[slot] == b {
				ev[i], fl[i] = s.events[slot]/rateWidth.Seconds(), s.failures[slot]/rateWidth.Seconds()
				seen = true
			}
		}
		if !seen && !reported[name] {
			delete(r.modules, name)
			continue
		}
		var sumE, sumF float64
		for i := rateBuckets - 1 - rateRecent; i < rateBuckets-1; i++ { // complete buckets only
			sumE += ev[i]
			sumF += fl[i]
		}
		peak := slices.Max(ev[:])
		out = append(out, rateView{
			Module: name, Events: rate(sumE / rateRecent), Failures: rate(sumF / rateRecent),
			EventPoints: points(ev[:], peak), FailurePoints: points(fl[:], peak), Peak: rate(peak),
		})
	}
	slices.SortFunc(out, func(a, b rateView) int { return strings.Compare(a.Module, b.Module) })
	return out
}

// points draws vs (scaled to peak, which may be 0) as an SVG polyline in a 120×30 box, the
// oldest at the left.
func points(vs []float64, peak float64) string {
	const w, h = 120.0, 30.0
	var b strings.Builder
	for i, v := range vs {
		y := h - 1
		if peak > 0 {
			y = h - 1 - (h-2)*v/peak
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(w*float64(i)/float64(len(vs)-1), 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	return b.String()
}
