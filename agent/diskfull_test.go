package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// TestDiskFull gives a wasmfleet-agent process an update that does not fit: an 8 MiB module
// for a data directory with room for 4. Where the test may mount one (root, as in CI) the
// data directory is a 4 MiB tmpfs, and the agent sees before downloading that the module
// cannot fit (store.CheckRoom: ENOSPC, and the free space in the message); elsewhere, and
// also as root, the agent runs under a 4 MiB RLIMIT_FSIZE, which statfs does not show, and
// the download's write fails with EFBIG.
//
// The agent reports the failure with its cause (a failed event, the module's target and
// the last error in the status), the running version keeps handling readings, and the space
// the partial download took is given back: the next, smaller release installs.
func TestDiskFull(t *testing.T) {
	bin := buildAgent(t)
	modes := []string{"tmpfs"}
	if os.Geteuid() != 0 {
		modes = nil
		t.Log("not root: no tmpfs; the disk is filled with RLIMIT_FSIZE only")
	}
	modes = append(modes, "rlimit-fsize")
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testDiskFull(t, bin, mode) })
	}
}

func testDiskFull(t *testing.T, bin, mode string) {
	const device, group, module = "pi-full", "full", "threshold-alert"
	const room = 4 << 20
	f := newFleet(t)
	manifest, small := example(t, module, "threshold-alert.wasm")
	at := func(version string) string {
		return strings.Replace(manifest, "version: 1.0.0", "version: "+version, 1)
	}
	cfg := f.agentConfig(device, group)
	opts := testenv.ProcessOptions{Name: "agent (" + mode + ")", Path: bin}
	want := "file too large"
	if mode == "tmpfs" {
		disk, why := testenv.SmallDisk(t, room)
		if disk == "" {
			t.Fatalf("running as root, yet no tmpfs: %v", why)
		}
		cfg.DataDir = filepath.Join(disk, "data")
		want = "bytes free in the data directory"
	} else {
		opts.FileSizeLimit = room
	}
	opts.Args = []string{"--config", writeAgentYAML(t, cfg)}
	proc := f.startAgentProcessWith(opts)

	v1 := f.publishRelease(manifest, small)
	f.publishDesired(f.desiredDoc(group, everyone(v1, "r1")))
	f.waitEvent(device, report.EventActivated, "1.0.0")
	alerts := "alerts/" + device + "/temperature"
	reading := func(what string) {
		t.Helper()
		before := len(f.messages(alerts))
		f.publishRaw("sensors/"+device+"/temperature", []byte(`{"value": 40}`), false)
		waitFor(t, 10*time.Second, func() bool { return len(f.messages(alerts)) > before }, func() string { return "an alert " + what })
	}
	reading("from 1.0.0")

	big := f.publishRelease(at("1.1.0"), padTo(t, small, 2*room))
	from := len(f.events(device))
	start := time.Now()
	f.publishDesired(f.desiredDoc(group, everyone(big, "r2")))
	var failed report.Event
	waitFor(t, 30*time.Second, func() bool {
		for _, e := range f.events(device)[from:] {
			if e.Kind == report.EventFailed && e.Version == big.Version {
				failed = e
				return true
			}
		}
		return false
	}, func() string { return "a failed event for 1.1.0" })
	if !strings.Contains(failed.Reason, want) {
		t.Errorf("failed event %+v: want the cause %q", failed, want)
	}
	s := f.waitStatus(device, func(s *report.Status) bool {
		m, _ := moduleStatus(s, module)
		return m.Target == big.Version && strings.Contains(s.LastError, want)
	}, "the failure recorded in the status")
	if m, _ := moduleStatus(s, module); m.Version != v1.Version || m.State != report.StateActive {
		t.Errorf("with the disk full the status says %+v; want 1.0.0 active", m)
	}
	reported := time.Since(start)
	reading("with the disk full")

	// The space is given back: nothing is left of the download, and a release that fits
	// installs (its blob, envelope, state and compiled code all need room).
	partial := filepath.Join(cfg.DataDir, "store", "blobs", "sha256", big.SHA256+".unverified")
	if fi, err := os.Stat(partial); err == nil {
		t.Errorf("the partial download is still there, %d bytes of the %d the disk has", fi.Size(), room)
	}
	fits := f.publishRelease(at("1.2.0"), padTo(t, small, room/4))
	f.publishDesired(f.desiredDoc(group, everyone(fits, "r3")))
	f.waitStatus(device, func(s *report.Status) bool {
		m, _ := moduleStatus(s, module)
		return m.Version == fits.Version && m.State == report.StateHealthCheck
	}, "1.2.0 installed after the full disk")
	reading("from 1.2.0")
	if !proc.Running() {
		t.Fatalf("the agent exited: %v", proc.Err())
	}
	t.Logf("%s: 8 MiB module, room for 4: failed %v after the desired state: %q; 1.0.0 kept handling; 1.2.0 (1 MiB) installed afterwards",
		mode, reported.Round(time.Millisecond), failed.Reason)
}
