package dashboard

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// recentDevices is how many of the latest reporting devices the overview lists.
const recentDevices = 8

// versionClasses colour a module's versions, newest first.
const versionClasses = 6

// overviewData is the overview's.
type overviewData struct {
	Total, Online, Offline, Vanished int
	Synced                           bool
	Modules                          []moduleDist
	Rates                            []rateView
	Active                           []rolloutRow
	RolloutsErr                      string
	Recent                           []deviceRow
	Statuses, Events, Malformed      uint64
	LastMalformed                    string
}

// moduleDist is how many devices run each version of a module, and in which state.
type moduleDist struct {
	Name     string
	Devices  int
	Versions []versionCount
	// NotActive counts the devices whose module is not active (in its health window,
	// rolled back, failed, downloading), by state.
	NotActive string
}

type versionCount struct {
	Version string
	Count   int
	Class   string
	X, W    float64
}

// distribution counts the versions of every module over devs.
func distribution(devs []registry.Device) []moduleDist {
	type acc struct {
		versions map[string]int
		states   map[string]int
		devices  int
	}
	by := map[string]*acc{}
	for i := range devs {
		for _, m := range devs[i].Modules {
			a := by[m.Name]
			if a == nil {
				a = &acc{versions: map[string]int{}, states: map[string]int{}}
				by[m.Name] = a
			}
			a.devices++
			a.versions[m.Version]++
			if m.State != report.StateActive {
				a.states[m.State]++
			}
		}
	}
	out := make([]moduleDist, 0, len(by))
	for name, a := range by {
		md := moduleDist{Name: name, Devices: a.devices}
		for v, n := range a.versions {
			md.Versions = append(md.Versions, versionCount{Version: v, Count: n})
		}
		slices.SortFunc(md.Versions, func(x, y versionCount) int { return -compareVersions(x.Version, y.Version) })
		x := 0.0
		for i := range md.Versions {
			v := &md.Versions[i]
			v.Class = fmt.Sprintf("v%d", min(i, versionClasses-1))
			v.W = 100 * float64(v.Count) / float64(a.devices)
			v.X = x
			x += v.W
		}
		var states []string
		for s, n := range a.states {
			states = append(states, fmt.Sprintf("%d %s", n, s))
		}
		slices.Sort(states)
		md.NotActive = strings.Join(states, ", ")
		out = append(out, md)
	}
	slices.SortFunc(out, func(a, b moduleDist) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// compareVersions orders semantic versions, and anything else after them as text.
func compareVersions(a, b string) int {
	va, ea := modules.ParseVersion(a)
	vb, eb := modules.ParseVersion(b)
	switch {
	case ea == nil && eb == nil:
		return va.Compare(vb)
	case ea == nil:
		return 1
	case eb == nil:
		return -1
	}
	return strings.Compare(a, b)
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	partial, err := parsePartial(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	devs := d.srv.Fleet().Registry().Devices(registry.Filter{})
	data := overviewData{Total: len(devs), Synced: d.srv.Synced(), Modules: distribution(devs), Rates: d.rates.chart()}
	recent := make([]*registry.Device, 0, len(devs))
	for i := range devs {
		dev := &devs[i]
		switch {
		case dev.Online:
			data.Online++
		case dev.Vanished:
			data.Vanished++
			data.Offline++
		default:
			data.Offline++
		}
		recent = append(recent, dev)
	}
	slices.SortFunc(recent, func(a, b *registry.Device) int {
		return cmp.Or(b.Received.Compare(a.Received), strings.Compare(a.Device, b.Device))
	})
	for _, dev := range recent[:min(recentDevices, len(recent))] {
		data.Recent = append(data.Recent, rowOfDevice(dev))
	}
	list, _, err := d.rollouts.list(r.Context(), pageMaxAge)
	if err != nil {
		data.RolloutsErr = err.Error()
	}
	for _, ro := range list {
		if !ro.State.Final() {
			data.Active = append(data.Active, d.rowOf(ro, d.liveTally(ro)))
		}
	}
	st := d.srv.Stats().Feed
	data.Statuses, data.Events, data.Malformed = st.Statuses, st.Events, st.Malformed
	if st.LastMalformed != nil {
		data.LastMalformed = st.LastMalformed.Error()
	}
	d.render(w, r, http.StatusOK, "overview", &page{Title: "Overview", Nav: "overview", Topics: "devices rollouts rates", Data: data}, partial)
}
