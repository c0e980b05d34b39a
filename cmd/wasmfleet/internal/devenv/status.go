package devenv

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
)

// statusPage is what the dashboard address serves when Config.Dashboard is nil: the
// rollouts and the group's devices, as plain text, from the running controller.
type statusPage struct {
	srv   *controller.Server
	group string
	log   zerolog.Logger
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	all, err := p.srv.Controller().List(r.Context())
	if err != nil {
		p.log.Warn().Err(err).Msg("status page: list rollouts")
		http.Error(w, "cannot list the rollouts: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "wasmfleet dev: group %s (plain status page; the web dashboard is not built into this wasmfleet)\n\n", p.group)
	slices.SortFunc(all, func(a, b *rollout.Rollout) int { return a.Created.Compare(b.Created) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLLOUT\tRELEASE\tGROUP\tSTATE\tWAVE")
	for _, r := range all {
		wave := "-"
		if r.Wave >= 0 && r.Wave < len(r.Waves) {
			wave = fmt.Sprintf("%d of %d (%g%%)", r.Wave+1, len(r.Waves), r.Waves[r.Wave])
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", r.ID, r.Release.Name, r.Release.Version, r.Group, r.State, wave)
	}
	tw.Flush()
	devs := p.srv.Tracker().Devices(p.group)
	slices.SortFunc(devs, func(a, b rollout.Device) int { return strings.Compare(a.ID, b.ID) })
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tONLINE\tMODULES\tSTATUS AGE")
	now := time.Now()
	for _, d := range devs {
		online, mods, age := "-", "-", "-"
		if s := d.Status; s != nil {
			online = fmt.Sprint(s.Online)
			var ms []string
			for _, m := range s.Modules {
				ms = append(ms, m.Name+"@"+m.Version+" "+m.State)
			}
			if len(ms) > 0 {
				mods = strings.Join(ms, ", ")
			}
			if !s.Time.IsZero() {
				age = now.Sub(s.Time).Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, online, mods, age)
	}
	tw.Flush()
}
