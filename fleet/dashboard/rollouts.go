package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// tallyBar is a wave's progress: the counts and a stacked bar in a 100×1 box.
type tallyBar struct {
	Expected, Healthy, Failed, Silent, Pending int
	Segments                                   []segment
	// Label says it in words, for screen readers and the tooltip.
	Label string
}

type segment struct {
	Class string
	X, W  float64
}

func barOf(t *rollout.Tally) *tallyBar {
	if t == nil {
		return nil
	}
	b := &tallyBar{Expected: t.Expected, Healthy: t.Healthy, Failed: t.Failed, Silent: t.Silent, Pending: t.Pending}
	b.Label = fmt.Sprintf("%d devices: %d healthy, %d failed, %d silent, %d pending", t.Expected, t.Healthy, t.Failed, t.Silent, t.Pending)
	total := t.Healthy + t.Failed + t.Silent + t.Pending
	if total == 0 {
		return b
	}
	x := 0.0
	for _, s := range []struct {
		class string
		n     int
	}{{"healthy", t.Healthy}, {"failed", t.Failed}, {"silent", t.Silent}, {"pending", t.Pending}} {
		if s.n == 0 {
			continue
		}
		w := 100 * float64(s.n) / float64(total)
		b.Segments = append(b.Segments, segment{Class: s.class, X: x, W: w})
		x += w
	}
	return b
}

// rolloutRow is a rollout in a list.
type rolloutRow struct {
	R        *rollout.Rollout
	Previous string
	// Where says where it is: "wave 2 of 4 (10%)".
	Where string
	// Bar is the current wave, live (or the revert's, once aborted); nil before its
	// desired state is out.
	Bar *tallyBar
}

// liveTally judges r's current wave (or, once aborted, the revert) from what the devices
// reported, as the controller does; nil before the wave's desired state is out.
func (d *Dashboard) liveTally(r *rollout.Rollout) *rollout.Tally {
	if r.WaveStarted.IsZero() || !r.Published {
		return nil
	}
	t := rollout.Evaluate(r, d.now(), d.srv.Tracker().Devices(r.Group))
	return &t
}

func (d *Dashboard) rowOf(r *rollout.Rollout, live *rollout.Tally) rolloutRow {
	row := rolloutRow{R: r, Previous: "nothing", Where: fmt.Sprintf("wave %d of %d (%g%%)", r.Wave+1, len(r.Waves), r.Waves[r.Wave])}
	if r.Previous != nil {
		row.Previous = r.Previous.Version
	}
	if !r.State.Final() || r.Aborted() {
		row.Bar = barOf(live)
	}
	return row
}

// waveView is one wave of a rollout's page.
type waveView struct {
	Wave    int
	Percent float64
	State   string
	// Live: Bar is the devices' reports now; otherwise the tally the wave was judged
	// with, from the audit records (nil: none).
	Live bool
	Bar  *tallyBar
}

func wavesOf(r *rollout.Rollout, audit []rollout.AuditRecord, live *rollout.Tally) []waveView {
	out := make([]waveView, len(r.Waves))
	for i, p := range r.Waves {
		w := waveView{Wave: i + 1, Percent: p}
		switch {
		case i < r.Wave:
			w.State = "passed"
		case i == r.Wave && r.State == rollout.Aborted:
			w.State = "aborted here"
		case i == r.Wave:
			w.State = string(r.State)
		case r.State.Final():
			w.State = "never opened"
		default:
			w.State = "waiting"
		}
		for _, a := range audit {
			if a.Tally != nil && a.Wave == i && a.Tally.Wave == i && (a.To == rollout.Soaking || a.To == rollout.Aborted || a.To == rollout.Completed) {
				w.Bar = barOf(a.Tally)
			}
		}
		if i == r.Wave && live != nil && !r.Aborted() && r.State != rollout.Completed {
			w.Bar, w.Live = barOf(live), true
		}
		out[i] = w
	}
	return out
}

// rolloutsData is the rollouts page's.
type rolloutsData struct {
	Rows []rolloutRow
	Bad  []string
	Err  string
}

func (d *Dashboard) rolloutsPage(w http.ResponseWriter, r *http.Request) {
	partial, err := parsePartial(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	data := rolloutsData{}
	list, bad, err := d.rollouts.list(r.Context(), pageMaxAge)
	if err != nil {
		data.Err = err.Error()
	}
	for _, ro := range list {
		data.Rows = append(data.Rows, d.rowOf(ro, d.liveTally(ro)))
	}
	for _, e := range bad {
		data.Bad = append(data.Bad, e.Error())
	}
	d.render(w, r, http.StatusOK, "rollouts", &page{Title: "Rollouts", Nav: "rollouts", Topics: "rollouts devices", Data: data}, partial)
}

// rolloutData is a rollout's page's.
type rolloutData struct {
	rolloutRow
	Waves    []waveView
	Revert   *tallyBar
	Failures []rollout.Failure
	History  []rollout.AuditRecord
	AuditErr string
	Policy   string
	Desired  string
	// What the buttons may do now.
	CanPause, CanResume, CanAbort bool
}

func (d *Dashboard) rolloutPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	partial, err := parsePartial(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	if topic.ValidateDeviceID(id) != nil {
		d.fail(w, r, http.StatusNotFound, fmt.Sprintf("no rollout %q: a rollout id is 1 to 128 of A-Z a-z 0-9 . _ -", clip(id)))
		return
	}
	ro, err := d.rollouts.get(r.Context(), id, pageMaxAge)
	switch {
	case err != nil:
		d.fail(w, r, http.StatusBadGateway, "the bucket: "+err.Error())
		return
	case ro == nil:
		d.fail(w, r, http.StatusNotFound, fmt.Sprintf("no rollout %q in the bucket", id))
		return
	}
	live := d.liveTally(ro)
	data := rolloutData{rolloutRow: d.rowOf(ro, live)}
	audit, err := d.rollouts.auditOf(r.Context(), ro)
	if err != nil {
		data.AuditErr = err.Error()
	}
	data.History = audit
	data.Waves = wavesOf(ro, audit, live)
	if ro.Aborted() {
		data.Revert = barOf(live)
	}
	switch {
	case live != nil && !ro.State.Final():
		data.Failures = live.Failures
	case ro.Last.Tally != nil:
		data.Failures = ro.Last.Tally.Failures
	}
	data.Policy = fmt.Sprintf("waves %s, soak %s, abort above %g%% failed once %d reported, silent after %s",
		wavesString(ro.Waves), time.Duration(ro.Soak), ro.MaxFailure*100, ro.MinDevices, time.Duration(ro.Timeout))
	switch {
	case ro.Desired == nil:
		data.Desired = "not signed yet"
	case ro.Published:
		data.Desired = fmt.Sprintf("sequence %d, published %s", ro.Sequence, utc(ro.WaveStarted))
	default:
		data.Desired = fmt.Sprintf("sequence %d, signed, not published yet", ro.Sequence)
	}
	data.CanPause = ro.State == rollout.Running || ro.State == rollout.Soaking
	data.CanResume = ro.State == rollout.Paused
	data.CanAbort = !ro.State.Final()
	d.render(w, r, http.StatusOK, "rollout", &page{Title: "Rollout " + ro.ID, Nav: "rollouts", Topics: "rollouts devices", Data: data}, partial)
}

func wavesString(ws []float64) string {
	parts := make([]string, len(ws))
	for i, p := range ws {
		parts[i] = fmt.Sprintf("%g%%", p)
	}
	return strings.Join(parts, ", ")
}

// rolloutAction is pause, resume or abort, for an operator's session with its CSRF token.
func (d *Dashboard) rolloutAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if action != "pause" && action != "resume" && action != "abort" {
		d.fail(w, r, http.StatusNotFound, fmt.Sprintf("no action %q: pause, resume or abort", clip(action)))
		return
	}
	if topic.ValidateDeviceID(id) != nil {
		d.badRequest(w, r, fmt.Errorf("rollout id %q: 1 to 128 of A-Z a-z 0-9 . _ -", clip(id)))
		return
	}
	known := []string{"csrf"}
	if action == "abort" {
		known = append(known, "reason")
	}
	f, err := parseForm(w, r, known...)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	reason := strings.Join(strings.Fields(f.Get("reason")), " ")
	switch {
	case len(reason) > maxReason:
		d.badRequest(w, r, fmt.Errorf("reason: %d bytes, more than %d", len(reason), maxReason))
		return
	case !utf8.ValidString(reason) || strings.ContainsFunc(reason, isControl):
		d.badRequest(w, r, errors.New("reason: not valid text (UTF-8 without control characters)"))
		return
	}
	ss := d.operator(w, r, f.Get("csrf"))
	if ss == nil {
		return
	}
	ctl := d.srv.Controller()
	actor := ss.Actor()
	var ro *rollout.Rollout
	switch action {
	case "pause":
		ro, err = ctl.Pause(r.Context(), id, actor)
	case "resume":
		ro, err = ctl.Resume(r.Context(), id, actor)
	case "abort":
		ro, err = ctl.Abort(r.Context(), id, actor, reason)
	}
	log := d.log.With().Str("action", action).Str("rollout", id).Str("actor", actor).Str("remote", r.RemoteAddr).Logger()
	switch {
	case errors.Is(err, rollout.ErrState):
		log.Info().Err(err).Msg("dashboard action refused")
		d.fail(w, r, http.StatusConflict, "refused: "+err.Error())
		return
	case errors.Is(err, rollout.ErrNotFound):
		d.fail(w, r, http.StatusNotFound, fmt.Sprintf("no rollout %q in the bucket", id))
		return
	case err != nil && ro == nil:
		log.Error().Err(err).Msg("dashboard action failed")
		d.fail(w, r, http.StatusBadGateway, action+" failed: "+err.Error())
		return
	case err != nil:
		// The document was written; its audit record was not (the controller writes it
		// at its next tick).
		log.Warn().Err(err).Msg("dashboard action written; its audit record is late")
	}
	log.Info().Str("state", string(ro.State)).Str("reason", reason).Msg("dashboard action")
	d.rollouts.invalidate()
	d.hub.mark(topicRollouts)
	http.Redirect(w, r, "/rollouts/"+pathEscape(id), http.StatusSeeOther)
}
