package dashboard

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
)

// deviceRow is a device in a table.
type deviceRow struct {
	ID       string
	Online   bool
	Vanished bool
	Seen     time.Time
	Agent    string
	Arch     string
	Groups   []string
	Modules  []string // name@version (state unless active)
	Failures uint64
	Error    string
}

func rowOfDevice(d *registry.Device) deviceRow {
	row := deviceRow{ID: d.Device, Online: d.Online, Vanished: d.Vanished, Seen: d.Received,
		Agent: d.AgentVersion, Arch: d.Arch, Groups: d.Groups, Failures: failures(d), Error: d.LastError}
	for _, m := range d.Modules {
		s := m.Name + "@" + m.Version
		if m.State != report.StateActive {
			s += " (" + m.State + ")"
		}
		row.Modules = append(row.Modules, s)
	}
	return row
}

func failures(d *registry.Device) uint64 {
	var n uint64
	for _, m := range d.Modules {
		n += m.Failures
	}
	return n
}

// devicesData is the devices page's.
type devicesData struct {
	Query deviceQuery
	Rows  []deviceRow
	// All devices known, Matched by the filters; the page shows From to To (from 1).
	All, Matched, From, To  int
	Page, Pages             int
	First, Prev, Next, Last string // links; "" when there is none
	// Options of the filter form.
	Groups, Modules []string
	// Columns are the sortable headers.
	Columns []column
}

type column struct {
	Title, Link string
	// Sorted is "▲" or "▼" on the column the table is sorted by.
	Sorted string
}

// filterDevices applies q to every device (sorted by id) and returns the matches, sorted
// as q says, and the filter form's options.
func filterDevices(all []registry.Device, q deviceQuery) (matched []*registry.Device, groups, modules []string) {
	f := registry.Filter{Group: q.Group, Module: q.Module, Version: q.Version, Offline: q.Online == "no"}
	gs, ms := map[string]bool{}, map[string]bool{}
	search := strings.ToLower(q.Search)
	for i := range all {
		d := &all[i]
		for _, g := range d.Groups {
			gs[g] = true
		}
		for _, m := range d.Modules {
			ms[m.Name] = true
			ms[m.Name+"@"+m.Version] = true
		}
		if !f.Match(d) || (q.Online == "yes" && !d.Online) || (search != "" && !containsFold(d.Device, search)) {
			continue
		}
		matched = append(matched, d)
	}
	groups, modules = slices.Sorted(maps.Keys(gs)), slices.Sorted(maps.Keys(ms))
	if q.Sort != "id" || q.Desc {
		var key func(a, b *registry.Device) int
		switch q.Sort {
		case "id":
			key = func(a, b *registry.Device) int { return 0 }
		case "seen":
			key = func(a, b *registry.Device) int { return a.Received.Compare(b.Received) }
		case "online":
			key = func(a, b *registry.Device) int { return cmpBool(a.Online, b.Online) }
		case "agent":
			key = func(a, b *registry.Device) int { return strings.Compare(a.AgentVersion, b.AgentVersion) }
		case "arch":
			key = func(a, b *registry.Device) int { return strings.Compare(a.Arch, b.Arch) }
		case "failures":
			fs := make(map[*registry.Device]uint64, len(matched))
			for _, d := range matched {
				fs[d] = failures(d)
			}
			key = func(a, b *registry.Device) int { return cmp.Compare(fs[a], fs[b]) }
		}
		slices.SortStableFunc(matched, func(a, b *registry.Device) int {
			c := key(a, b)
			if c == 0 {
				c = strings.Compare(a.Device, b.Device)
			}
			if q.Desc {
				return -c
			}
			return c
		})
	}
	return matched, groups, modules
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// containsFold reports whether s contains lower (already lower case), ASCII case folded
// (device ids are ASCII).
func containsFold(s, lower string) bool {
	n := len(lower)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

func (d *Dashboard) devices(w http.ResponseWriter, r *http.Request) {
	q, err := parseDeviceQuery(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	all := d.srv.Fleet().Registry().Devices(registry.Filter{})
	matched, groups, modules := filterDevices(all, q)
	data := devicesData{Query: q, All: len(all), Matched: len(matched), Groups: groups, Modules: modules}
	data.Pages = max(1, (len(matched)+q.Per-1)/q.Per)
	data.Page = min(q.Page, data.Pages)
	from := (data.Page - 1) * q.Per
	to := min(from+q.Per, len(matched))
	for _, dev := range matched[from:to] {
		data.Rows = append(data.Rows, rowOfDevice(dev))
	}
	if len(matched) > 0 {
		data.From, data.To = from+1, to
	}
	link := func(p int) string {
		l := q
		l.Page = p
		if s := l.Encode(); s != "" {
			return "/devices?" + s
		}
		return "/devices"
	}
	if data.Page > 1 {
		data.First, data.Prev = link(1), link(data.Page-1)
	}
	if data.Page < data.Pages {
		data.Next, data.Last = link(data.Page+1), link(data.Pages)
	}
	for _, c := range []struct{ key, title string }{{"id", "Device"}, {"online", "Online"}, {"seen", "Last report"},
		{"agent", "Agent"}, {"arch", "Arch"}, {"failures", "Failures"}} {
		l := q
		l.Page = 1
		col := column{Title: c.title}
		if l.Sort == c.key {
			l.Desc = !l.Desc
			col.Sorted = map[bool]string{false: "▲", true: "▼"}[q.Desc]
		} else {
			l.Sort, l.Desc = c.key, sortKeys[c.key]
		}
		col.Link = "/devices"
		if s := l.Encode(); s != "" {
			col.Link += "?" + s
		}
		data.Columns = append(data.Columns, col)
	}
	d.render(w, r, http.StatusOK, "devices", &page{Title: "Devices", Nav: "devices", Topics: "devices", Data: data}, q.Partial)
}

// deviceData is a device's page's.
type deviceData struct {
	registry.Device
	Modules  []moduleView
	Applied  []string
	History  []report.Event // newest first
	Rollouts []deviceRollout
}

type moduleView struct {
	report.ModuleStatus
	FailuresBy string
	P50, P99   string
}

// deviceRollout is an unfinished rollout in one of the device's groups, and where the
// device stands in it.
type deviceRollout struct {
	ID, Group, Release string
	InWave             bool
	Verdict            string
}

func micros(us uint64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%d µs", us)
	case us < 1000_000:
		return fmt.Sprintf("%.1f ms", float64(us)/1000)
	}
	return fmt.Sprintf("%.2f s", float64(us)/1e6)
}

func (d *Dashboard) device(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	partial, err := parsePartial(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	dev, ok := d.srv.Fleet().Registry().Device(id)
	if !ok {
		msg := fmt.Sprintf("no device %q is known: it never reported a status, or its status was cleared", id)
		if topic.ValidateDeviceID(id) != nil {
			msg = fmt.Sprintf("no device %q: a device id is 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'", id)
		}
		d.fail(w, r, http.StatusNotFound, msg)
		return
	}
	data := deviceData{Device: dev}
	for _, m := range dev.Modules {
		mv := moduleView{ModuleStatus: m, P50: micros(m.P50Micros), P99: micros(m.P99Micros)}
		var by []string
		for _, k := range slices.Sorted(maps.Keys(m.FailuresBy)) {
			by = append(by, fmt.Sprintf("%s %d", k, m.FailuresBy[k]))
		}
		mv.FailuresBy = strings.Join(by, ", ")
		data.Modules = append(data.Modules, mv)
	}
	for _, k := range slices.Sorted(maps.Keys(dev.Applied)) {
		data.Applied = append(data.Applied, fmt.Sprintf("%s: %d", k, dev.Applied[k]))
	}
	h := d.srv.Fleet().History(id)
	slices.Reverse(h)
	data.History = h
	if list, _, err := d.rollouts.list(r.Context(), pageMaxAge); err == nil {
		for _, ro := range list {
			if ro.State.Final() || !dev.InGroup(ro.Group) {
				continue
			}
			dr := deviceRollout{ID: ro.ID, Group: ro.Group, Release: ro.Release.Name + "@" + ro.Release.Version,
				InWave: wave.InWave(id, ro.ID, ro.Percent())}
			for _, td := range d.srv.Tracker().Devices(ro.Group) {
				if td.ID == id {
					v := rollout.Judge(ro, &td)
					dr.Verdict = v.Outcome.String()
					if v.Reason != "" {
						dr.Verdict += ": " + v.Reason
					}
				}
			}
			data.Rollouts = append(data.Rollouts, dr)
		}
	}
	d.render(w, r, http.StatusOK, "device", &page{Title: "Device " + id, Nav: "devices", Topics: "devices rollouts", Data: data}, partial)
}
