package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/store"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// plantedWAT is a module that is not signed: if the agent ever ran a download that it had
// not verified, this one would answer a reading with "planted" on the alert topic.
const plantedWAT = `(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "alerts/pi-pc/temperature")
  (data (i32.const 64) "planted")
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (drop (call $publish (i32.const 16) (i32.const 24) (i32.const 64) (i32.const 7)))
    (i32.const 0)))`

// The steps of an update a power cut is aimed at.
const (
	cutDesired  = "desired"  // 0 to 40 ms after the desired state is published: verify, keep, record, start
	cutDownload = "download" // when 5% to 95% of the module has crossed the link
	cutCommit   = "commit"   // after the download: hash, commit, store the release, compile, activate, record
	cutHealth   = "health"   // after activation: the health window, marking it healthy, collecting the old blob
)

// What the test does to the *.unverified file after a cut, for the damage a real power cut
// can do that kill -9 cannot (the kernel keeps a killed process's writes).
const (
	damageNone      = "none"
	damageTruncate  = "truncated" // the tail that had not reached the disk is gone
	damageZeroTail  = "zero-tail" // the size reached the disk, the last bytes did not: zeros
	damagePlanted   = "planted"   // someone put another module of the signed size there
	damageCommitted = ""          // no partial file was left to damage
)

// TestPowerCutDuringUpdate kills wasmfleet-agent (SIGKILL, the process) at random points of
// an update: while it applies the desired state, downloads, verifies, commits, compiles,
// activates and records the new release, and during its health window. Each trial updates
// to a new release (1.0.N) of about 1 MiB, downloaded through a throttled proxy so that the
// download takes a while; the cut is aimed at one of the steps above, chosen at random, and
// lands at a random instant of it. After the cut, a partial download may be damaged as a
// power cut could (truncated, zeroed tail, replaced by an unsigned module).
//
// After each cut: the state file parses (the store opens), the active release is the old or
// the new one, its blob hashes to its digest and its envelope verifies. After each restart:
// no status reports anything but the old or new version, nothing fails, the update
// completes (the new version active and healthy), and a reading gets the signed module's
// alert (never the planted one's). -powercuts sets the number of trials (make soak: 200),
// -seed repeats a run.
func TestPowerCutDuringUpdate(t *testing.T) {
	const device, group, module = "pi-pc", "pc", "threshold-alert"
	const moduleSize = 1 << 20
	rng := testRand(t)
	bin := buildAgent(t)
	f := newFleet(t)
	trust, err := signing.ParseTrust(f.trustEnv)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, f.s3.Endpoint())
	proxy.SetRate(8 << 20)
	manifest, small := example(t, module, "threshold-alert.wasm")
	planted := watModule(t, plantedWAT)
	release := func(version string) (signing.ReleaseRef, []byte) {
		wasm := padTo(t, small, moduleSize)
		return f.publishRelease(strings.Replace(manifest, "version: 1.0.0", "version: "+version, 1), wasm), wasm
	}

	cfg := f.agentConfig(device, group)
	cfg.S3.Endpoint = proxy.Addr()
	cfg.Health.Events, cfg.Health.Window = 1000, modules.Duration(time.Second) // healthy by time, not by events
	config := writeAgentYAML(t, cfg)
	storeDir := filepath.Join(cfg.DataDir, "store")
	watch := newLogWatch()
	start := func(name string) *testenv.Process {
		return f.startAgentProcessWith(testenv.ProcessOptions{Name: name, Path: bin, Args: []string{"--config", config}, OnLine: watch.onLine})
	}
	healthy := func(ref signing.ReleaseRef) func(*report.Status) bool {
		return func(s *report.Status) bool {
			m, ok := moduleStatus(s, module)
			return ok && s.Online && m.Version == ref.Version && m.SHA256 == ref.SHA256 && m.State == report.StateActive && m.Previous == ""
		}
	}
	alerts := "alerts/" + device + "/temperature"
	reading := func(what string) {
		t.Helper()
		before := len(f.messages(alerts))
		f.publishRaw("sensors/"+device+"/temperature", []byte(`{"value": 31.5}`), false)
		waitFor(t, 10*time.Second, func() bool { return len(f.messages(alerts)) > before },
			func() string { return "an alert " + what })
		var a alert
		last := f.messages(alerts)[len(f.messages(alerts))-1]
		if err := json.Unmarshal(last, &a); err != nil || a.Device != device || a.Value != 31.5 {
			t.Fatalf("alert %s: %q is not the signed module's alert (%v)", what, last, err)
		}
	}

	// The first install, uncut, measures how long the agent takes from "module downloaded"
	// to "module activated": the window the commit cuts are spread over.
	proc := start("agent")
	cur, _ := release("1.0.0")
	downloaded, activated := watch.expect("module downloaded"), watch.expect("module activated")
	f.publishDesired(f.desiredDoc(group, everyone(cur, "r0")))
	var d0, a0 time.Time
	for d0.IsZero() || a0.IsZero() {
		select {
		case d0 = <-downloaded:
		case a0 = <-activated:
		case <-proc.Done():
			t.Fatalf("the agent exited: %v", proc.Err())
		case <-time.After(30 * time.Second):
			t.Fatalf("the first install did not finish; events %+v", f.events(device))
		}
	}
	commitSpan := max(a0.Sub(d0)*3/2, 5*time.Millisecond)
	f.waitStatus(device, healthy(cur), "1.0.0 active and healthy")
	reading("from 1.0.0")
	t.Logf("first install: %v from downloaded to activated; commit cuts spread over %v", a0.Sub(d0).Round(time.Microsecond), commitSpan)

	phases := []string{cutDesired, cutDownload, cutCommit, cutHealth}
	damages := []string{damageNone, damageTruncate, damageZeroTail, damagePlanted}
	type outcome struct{ phase, landed, damage string }
	var outcomes []outcome
	var recover durations
	began := time.Now()
	for i := 1; i <= *powerCuts; i++ {
		old := cur
		next, _ := release(fmt.Sprintf("1.0.%d", i))
		mkey, _ := objects.ModuleKey(next.Name, next.Version)
		phase := phases[rng.IntN(len(phases))]
		downloaded, activated := watch.expect("module downloaded"), watch.expect("module activated")
		bytesBefore, _ := proxy.BytesFor(mkey)
		eventsFrom := len(f.events(device))
		f.publishDesired(f.desiredDoc(group, everyone(next, fmt.Sprintf("r%d", i))))

		// Aim: wait for the step, then a random instant into it. The sleeps are the random
		// instant itself, not a wait for something that could be polled.
		switch phase {
		case cutDesired:
			time.Sleep(uniform(rng, 40*time.Millisecond))
		case cutDownload:
			want := int64(float64(moduleSize) * (0.05 + 0.9*rng.Float64()))
			waitFor(t, 30*time.Second, func() bool {
				b, _ := proxy.BytesFor(mkey)
				return b-bytesBefore >= want || len(activated) > 0
			}, func() string { return fmt.Sprintf("trial %d: %d bytes of %s through the proxy", i, want, mkey) })
		case cutCommit:
			select {
			case <-downloaded:
			case <-time.After(30 * time.Second):
				t.Fatalf("trial %d: no \"module downloaded\"", i)
			}
			time.Sleep(uniform(rng, commitSpan))
		case cutHealth:
			select {
			case <-activated:
			case <-time.After(30 * time.Second):
				t.Fatalf("trial %d: no \"module activated\"", i)
			}
			time.Sleep(uniform(rng, time.Duration(cfg.Health.Window)+200*time.Millisecond))
		}
		if err := proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-proc.Done()

		// What the cut left on disk.
		landed := checkStoreAfterCut(t, storeDir, trust, module, old, next)
		damage := damageCutPartial(t, rng, damages, filepath.Join(storeDir, "blobs", "sha256", next.SHA256+".unverified"), planted, next.Size)
		outcomes = append(outcomes, outcome{phase, landed, damage})

		statusFrom := len(f.messages(report.Topics{}.Status(device)))
		restartedAt := time.Now()
		proc = start(fmt.Sprintf("agent (after cut %d)", i))
		f.waitStatus(device, healthy(next), fmt.Sprintf("trial %d (%s cut, %s, %s partial): %s active and healthy",
			i, phase, landed, damage, next.Version))
		recover = append(recover, time.Since(restartedAt))
		for _, b := range f.messages(report.Topics{}.Status(device))[statusFrom:] {
			s, err := report.ParseStatus(b)
			if err != nil {
				t.Fatalf("trial %d: malformed status: %v", i, err)
			}
			if m, ok := moduleStatus(s, module); ok && (m.Version != old.Version && m.Version != next.Version || m.State == report.StateFailed) {
				t.Fatalf("trial %d (%s cut, %s partial): after the restart the status said %+v", i, phase, damage, m)
			}
		}
		for _, e := range f.events(device)[eventsFrom:] {
			if e.Kind == report.EventFailed || e.Kind == report.EventRolledBack {
				t.Fatalf("trial %d (%s cut, %s partial): %s event: %s", i, phase, damage, e.Kind, e.Reason)
			}
		}
		if strings.Contains(proc.Output(), "cannot restore module") {
			t.Fatalf("trial %d: the restarted agent could not restore its module", i)
		}
		reading(fmt.Sprintf("after trial %d", i))
		cur = next
	}
	if err := proc.Stop(); err != nil {
		t.Errorf("agent after SIGTERM: %v", err)
	}

	count := map[string]int{}
	for _, o := range outcomes {
		count["aimed at "+o.phase]++
		count["landed "+o.landed]++
		if o.damage != damageCommitted {
			count["partial "+o.damage]++
		}
	}
	var lines []string
	for k, n := range count {
		lines = append(lines, fmt.Sprintf("%s: %d", k, n))
	}
	slices.Sort(lines)
	t.Logf("%d power cuts in %v; restart to update complete: %v\n\t%s", len(outcomes),
		time.Since(began).Round(time.Second), recover, strings.Join(lines, "\n\t"))
	// What the crashes left: nothing but the data directory's own parts. The compile cache
	// (cache/) keeps an entry for every version ever compiled; that is the sandbox's.
	files, bytes, entries := diskUsage(t, cfg.DataDir)
	cacheFiles, cacheBytes, _ := diskUsage(t, filepath.Join(cfg.DataDir, "cache"))
	t.Logf("data directory after %d cuts: %d files, %.1f MiB (cache/: %d files, %.1f MiB): %v", len(outcomes),
		files, float64(bytes)/(1<<20), cacheFiles, float64(cacheBytes)/(1<<20), entries)
	if want := []string{"cache", "cache.key", "desired", "kv", "store", "work"}; !slices.Equal(entries, want) {
		t.Errorf("the data directory holds %v after the cuts, want %v: something a killed agent left is never removed", entries, want)
	}
}

// checkStoreAfterCut opens the store a killed agent left (the state file must parse) and
// checks that the active release of module is old or next, that its blob hashes to its
// digest and that its envelope verifies under trust. It returns where in the update the
// store says the cut landed.
func checkStoreAfterCut(t *testing.T, dir string, trust *signing.Trust, module string, old, next signing.ReleaseRef) (landed string) {
	t.Helper()
	s, err := store.Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatalf("after the cut the store does not open: %v", err)
	}
	defer s.Close()
	ms, ok := s.State().Modules[module]
	if !ok || ms.Active != old && ms.Active != next {
		t.Fatalf("after the cut the state says %s is %+v, want %s or %s active", module, ms, old, next)
	}
	if _, err := s.Blob(ms.Active.SHA256); err != nil {
		t.Fatalf("after the cut the active module's blob: %v", err)
	}
	env, err := s.Release(ms.Active)
	if err != nil {
		t.Fatalf("after the cut the active release's envelope: %v", err)
	}
	rel, err := (&signing.Verifier{Trust: trust}).VerifyRelease(env)
	if err != nil {
		t.Fatalf("after the cut the active release does not verify: %v", err)
	}
	if err := signing.CheckRelease(ms.Active, rel); err != nil {
		t.Fatalf("after the cut the active envelope is not the active release: %v", err)
	}
	if ms.Previous != nil && *ms.Previous != old {
		t.Fatalf("after the cut the previous release is %s, want %s", ms.Previous, old)
	}
	_, err = os.Stat(filepath.Join(dir, "blobs", "sha256", next.SHA256+".unverified"))
	switch partial := err == nil; {
	case ms.Active == next && ms.Previous != nil:
		return "in the health window (new active, old kept)"
	case ms.Active == next:
		return "after the update (new active and healthy)"
	case s.HasBlob(next.SHA256):
		return "between commit and activation (old active, new committed)"
	case partial:
		return "during the download or its check (old active, partial)"
	}
	return "before the download (old active)"
}

// damageCutPartial does to the download at path, if there is one, a damage chosen at random:
// what a power cut can do to a file that kill -9 leaves whole.
func damageCutPartial(t *testing.T, rng *rand.Rand, damages []string, path string, planted []byte, size uint64) string {
	t.Helper()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return damageCommitted
	}
	if err != nil {
		t.Fatal(err)
	}
	damage := damages[rng.IntN(len(damages))]
	n := fi.Size()
	switch {
	case damage == damageTruncate && n > 0:
		err = os.Truncate(path, rng.Int64N(n))
	case damage == damageZeroTail && n > 0:
		var f *os.File
		if f, err = os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			k := 1 + rng.Int64N(min(n, 64<<10))
			_, err = f.WriteAt(make([]byte, k), n-k)
			f.Close()
		}
	case damage == damagePlanted:
		// An unsigned module of exactly the signed size: complete, as far as sizes go.
		err = os.WriteFile(path, padTo(t, planted, int(size)), 0o600)
	default:
		damage = damageNone
	}
	if err != nil {
		t.Fatalf("damage the partial download: %v", err)
	}
	return damage
}

// padTo appends a custom section of random bytes to wasm so that it is exactly size bytes:
// a valid module with a digest of its own.
func padTo(t testing.TB, wasm []byte, size int) []byte {
	t.Helper()
	const name = "padding"
	lebLen := func(n int) int {
		l := 1
		for n >= 0x80 {
			n >>= 7
			l++
		}
		return l
	}
	// size = len(wasm) + 1 (section id) + lebLen(body) + body, body = 1 + len(name) + payload.
	for l := 1; l <= 5; l++ {
		body := size - len(wasm) - 1 - l
		if payload := body - 1 - len(name); payload >= 0 && lebLen(body) == l {
			out := withCustomSection(t, wasm, name, payload)
			if len(out) != size {
				t.Fatalf("padTo: %d bytes, want %d", len(out), size)
			}
			return out
		}
	}
	t.Fatalf("padTo: cannot pad %d bytes to %d", len(wasm), size)
	return nil
}
