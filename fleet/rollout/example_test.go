package rollout_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
	"github.com/wasmfleet/wasmfleet/signing"
)

func ExampleParseWaves() {
	w, _ := rollout.ParseWaves("1,10,50,100")
	r, _ := rollout.ParseRatio("5%")
	fmt.Println(w, r)
	_, err := rollout.ParseWaves("10,50")
	fmt.Println(err)
	// Output:
	// [1 10 50 100] 0.05
	// waves "10,50": the last wave is 50%; it must be 100
}

// Step is the whole state machine, without I/O: here a wave of 10% of 200 devices in which
// every tenth device rolls back (1 of 18: 5.6%), with 5% allowed.
func ExampleStep() {
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rel := signing.ReleaseRef{Name: "threshold-alert", Version: "1.3.0", SHA256: strings.Repeat("13", 32), Size: 1013}
	prev := signing.ReleaseRef{Name: "threshold-alert", Version: "1.2.0", SHA256: strings.Repeat("12", 32), Size: 1012}
	r := &rollout.Rollout{
		ID: "r-example", Release: rel, Previous: &prev, Group: "greenhouse",
		Waves: []float64{10, 100}, Soak: modules.Duration(10 * time.Minute), MaxFailure: 0.05, MinDevices: 3,
		Timeout: modules.Duration(30 * time.Minute), State: rollout.Running,
		WaveStarted: start, Created: start, Updated: start,
		Last: rollout.Transition{Step: 1, Time: start, To: rollout.Running, Actor: "alice"},
	}
	var devices []rollout.Device
	inWave := 0
	for i := range 200 {
		id := fmt.Sprintf("dev-%03d", i)
		m := report.ModuleStatus{Name: rel.Name, Version: prev.Version, State: report.StateActive}
		if wave.InWave(id, r.ID, 10) {
			inWave++
			m.Version, m.Rollout = rel.Version, r.ID
			if inWave%10 == 0 {
				m.Version, m.State, m.Reason = prev.Version, report.StateRolledBack, "trap"
			}
		}
		devices = append(devices, rollout.Device{ID: id, Status: &report.Status{Device: id, Online: true,
			Groups: []string{"greenhouse"}, Modules: []report.ModuleStatus{m}}})
	}
	t := rollout.Evaluate(r, start.Add(time.Minute), devices)
	fmt.Printf("wave 1: %d devices, %d healthy, %d failed\n", t.Expected, t.Healthy, t.Failed)
	next := rollout.Step(r, start.Add(time.Minute), devices)
	fmt.Println(next.State)
	fmt.Println(next.Content(2, start.Add(time.Hour)).Modules[0].Release.Version, "rollback:", next.Content(2, start).Modules[0].Rollback)
	// Output:
	// wave 1: 18 devices, 17 healthy, 1 failed
	// aborted
	// 1.2.0 rollback: true
}
