package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/report"
)

func TestTracker(t *testing.T) {
	clock := &fakeClock{now: t0}
	tr := NewTracker(clock)
	changes := 0
	tr.OnChange(func() { changes++ })
	st := &report.Status{Device: "d1", Online: true, Time: t0, Groups: []string{"a", "b"},
		Modules: []report.ModuleStatus{{Name: testModule, Version: "1.3.0", State: report.StateActive}}}
	if err := tr.Status("d2", st); err == nil {
		t.Error("a status about d1 on d2's topic was accepted")
	}
	if err := tr.Status("d1", st); err != nil {
		t.Fatal(err)
	}
	if n := len(tr.Devices("a")); n != 1 || len(tr.Devices("b")) != 1 || len(tr.Devices("c")) != 0 {
		t.Errorf("groups: a=%d", n)
	}
	snap := tr.Devices("a")[0]

	// The last will keeps the modules.
	if err := tr.Status("d1", &report.Status{Device: "d1"}); err != nil {
		t.Fatal(err)
	}
	d := tr.Devices("a")[0]
	if d.Status.Online || len(d.Status.Modules) != 1 || d.Status.Modules[0].Version != "1.3.0" {
		t.Errorf("after the will: %+v", d.Status)
	}
	if !snap.Status.Online {
		t.Error("a snapshot changed after it was handed out")
	}

	// Moving to another group.
	tr.Status("d1", &report.Status{Device: "d1", Online: true, Groups: []string{"c"}})
	if len(tr.Devices("a")) != 0 || len(tr.Devices("c")) != 1 {
		t.Error("group change not followed")
	}

	// Events: only the kinds that matter, the last MaxEvents, stamped with the controller's clock.
	if err := tr.Event("d2", &report.Event{Device: "d1", Kind: report.EventHealthy}); err == nil {
		t.Error("an event about d1 on d2's topic was accepted")
	}
	tr.Event("d1", &report.Event{Device: "d1", Kind: report.EventDownloading})
	for i := range MaxEvents + 3 {
		clock.Advance(time.Second)
		tr.Event("d1", &report.Event{Device: "d1", Kind: report.EventActivated, Version: fmt.Sprint(i)})
	}
	evs := tr.Devices("c")[0].Events
	if len(evs) != MaxEvents || evs[len(evs)-1].Version != fmt.Sprint(MaxEvents+2) || !evs[len(evs)-1].Received.Equal(clock.Now()) {
		t.Errorf("events: %d, last %+v", len(evs), evs[len(evs)-1])
	}
	for _, e := range evs {
		if e.Kind == report.EventDownloading {
			t.Error("a downloading event was kept")
		}
	}
	// Events of a device with no status yet are kept, but it is in no group.
	tr.Event("d3", &report.Event{Device: "d3", Kind: report.EventFailed})
	if len(tr.Devices("c")) != 1 {
		t.Error("a device with no status joined a group")
	}
	tr.Forget("d1")
	if len(tr.Devices("c")) != 0 {
		t.Error("Forget left the device")
	}
	if changes == 0 {
		t.Error("OnChange never called")
	}
}
