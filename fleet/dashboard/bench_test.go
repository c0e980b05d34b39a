package dashboard

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/internal/testenv/fleetenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// benchDevices is the fleet size of the page benchmarks.
const benchDevices = 10_000

// benchFixture is a dashboard with benchDevices devices in three groups, two modules in
// several versions and states, a rollout of one group (3,334 devices) in its second wave
// (50%, tallied live from the devices' reports on every load), and, when bucket
// is set, 30 releases in a real versitygw.
func benchFixture(b *testing.B, bucket bool) *fixture {
	b.Helper()
	f := newFixture(b, testToken)
	groups := []string{"greenhouse", "hall-a", "hall-b"}
	for i := range benchDevices {
		s := device(fmt.Sprintf("pi-%05d", i), groups[i%3])
		s.Modules[0].Version = []string{"1.0.0", "1.1.0", "1.2.0"}[i%7%3]
		s.Modules[0].Invocations, s.Modules[0].Failures = uint64(i*10), uint64(i%13)
		s.Modules = append(s.Modules, report.ModuleStatus{Name: "moving-average", Version: "0.3.0", State: report.StateActive})
		if i%50 == 0 {
			s.Modules[1].State, s.Modules[1].Reason = report.StateRolledBack, "2 of 3 events failed: trap"
			s.LastError = "moving-average 0.4.0 rolled back"
		}
		s.Online = i%17 != 0
		f.status(s)
	}
	f.publishedRollout("r1")
	if bucket {
		w := fleetenv.New(b, nil)
		for i := range 30 {
			w.PublishRelease(fleetenv.ThresholdAlert(b, fmt.Sprintf("1.%d.0", i)))
		}
		pub, err := publish.Open(w.S3Config, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		f.d.releases = newReleaseCache(pub, f.d.now)
	}
	return f
}

// BenchmarkPages is the server time of one page load (the whole page, as a browser first
// asks for it) with benchDevices devices registered. The budget is 200 ms
// (docs/BENCHMARKS.md, "Dashboard").
func BenchmarkPages(b *testing.B) {
	f := benchFixture(b, true)
	for _, p := range []struct{ name, url string }{
		{"overview", "/"},
		{"devices", "/devices"},
		{"devices-last-page", "/devices?page=200"},
		{"devices-search", "/devices?q=pi-0999"},
		{"devices-filtered", "/devices?group=hall-a&module=threshold-alert%401.1.0&online=yes"},
		{"devices-by-failures", "/devices?sort=failures&per=500"},
		{"device", "/devices/pi-04242"},
		{"rollouts", "/rollouts"},
		{"rollout", "/rollouts/r1"},
		{"releases", "/releases"},
		{"live-part-overview", "/?partial=1"},
	} {
		b.Run(p.name, func(b *testing.B) {
			code, body := f.get(p.url)
			if code != http.StatusOK {
				b.Fatalf("%s: %d %s", p.url, code, body)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, p.url, nil)
				w := httptest.NewRecorder()
				f.d.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
	// Peers: what a dashboard without server-side paging would do for the devices page,
	// every row in one HTML page, or every device as JSON for a script to lay out (the
	// shape of `wasmfleet devices --json`).
	b.Run("peer-devices-all-rows-html", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			all := f.srv.Fleet().Registry().Devices(registry.Filter{})
			matched, groups, mods := filterDevices(all, deviceQuery{Sort: "id", Page: 1, Per: len(all)})
			data := devicesData{All: len(all), Matched: len(matched), Groups: groups, Modules: mods, Page: 1, Pages: 1}
			for _, dev := range matched {
				data.Rows = append(data.Rows, rowOfDevice(dev))
			}
			p := &page{Title: "Devices", Nav: "devices", Topics: "devices", Data: data}
			if err := f.d.pages["devices"].ExecuteTemplate(io.Discard, "layout", p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-devices-all-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := json.NewEncoder(io.Discard).Encode(f.srv.Fleet().Registry().Devices(registry.Filter{})); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The releases page when its cache is cold: it lists and reads 30 releases from
	// versitygw and verifies each (the page does this once every 15 s).
	b.Run("releases-cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f.d.releases.mu.Lock()
			f.d.releases.fetched = time.Time{}
			f.d.releases.mu.Unlock()
			r := httptest.NewRequest(http.MethodGet, "/releases", nil)
			w := httptest.NewRecorder()
			f.d.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	})
}

// BenchmarkStatus is the cost a device's status adds to the controller's MQTT handler with
// the dashboard listening (parse, tracker, registry, rates), at benchDevices devices.
func BenchmarkStatus(b *testing.B) {
	f := benchFixture(b, false)
	s := device("pi-00042")
	payloads := make([][]byte, 2)
	for i := range payloads {
		s.Modules[0].Invocations = uint64(1000 * (i + 1))
		payloads[i], _ = json.Marshal(s)
	}
	topic := report.Topics{}.Status("pi-00042")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := f.srv.Feed().Handle(topic, payloads[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
