package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/signing"
)

// sampleState is a state with one module in its health window and one rolled back.
func sampleState() State {
	prev := ref("threshold-alert", "1.1.0", 1)
	blocked := ref("echo", "0.2.0", 4)
	failed := ref("moving-average", "1.0.0", 5)
	return State{
		Version:      StateVersion,
		Applied:      map[string]uint64{"group/kitchen": 42, "device/pi-1": 7},
		TrustVersion: 3,
		Modules: map[string]ModuleState{
			"threshold-alert": {Active: ref("threshold-alert", "1.2.0", 2), Previous: &prev, Since: t0, Status: StatusActive, Source: "group/kitchen", Rollout: "r-2026-11-25"},
			"echo":            {Active: ref("echo", "0.1.0", 3), Healthy: true, Since: t0.Add(-3600e9), Status: StatusRolledBack, Reason: "trapped on 9 of 10 events", Blocked: &blocked},
			// The first install failed: nothing is active.
			"moving-average": {Failed: &failed, Permanent: true, Status: "failed", Reason: "signature: under threshold"},
		},
	}
}

func set(st State) func(*State) error {
	return func(s *State) error { *s = st.Clone(); return nil }
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	want := sampleState()
	if err := s.Update(set(want)); err != nil {
		t.Fatal(err)
	}
	if got := s.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("State = %+v\nwant %+v", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state.json: %v", err)
	}
	s.Close()
	s = open(t, dir)
	if got := s.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("State after reopening = %+v\nwant %+v", got, want)
	}
}

func TestStateIsACopy(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Update(set(sampleState())); err != nil {
		t.Fatal(err)
	}
	st := s.State()
	st.Applied["group/kitchen"] = 1
	st.Modules["threshold-alert"].Previous.Version = "9.9.9"
	st.Modules["echo"].Blocked.Version = "9.9.9"
	st.Modules["moving-average"].Failed.Version = "9.9.9"
	delete(st.Modules, "echo")
	if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatalf("changing State's result changed the store: %+v", got)
	}
	// Nor does a pointer kept by an Update function.
	var kept *State
	if err := s.Update(func(st *State) error { kept = st; return nil }); err != nil {
		t.Fatal(err)
	}
	kept.Modules["threshold-alert"].Previous.Version = "9.9.9"
	kept.Applied["x"] = 1
	if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatalf("changing the state after Update returned changed the store: %+v", got)
	}
}

func TestUpdateErrorChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Update(set(sampleState())); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(dir, "state.json"))
	boom := errors.New("boom")
	err := s.Update(func(st *State) error {
		st.Applied["group/kitchen"] = 99
		delete(st.Modules, "echo")
		return boom
	})
	if err != boom {
		t.Fatalf("Update = %v, want fn's error as it is", err)
	}
	if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatal("a failed fn changed the state")
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "state.json")), before) {
		t.Fatal("a failed fn changed state.json")
	}
}

func TestUpdateRefusesInvalidState(t *testing.T) {
	s := open(t, t.TempDir())
	cases := map[string]func(*State){
		"version":         func(st *State) { st.Version = 2 },
		"module name":     func(st *State) { st.Modules["../x"] = st.Modules["echo"] },
		"active of other": func(st *State) { st.Modules["other"] = st.Modules["echo"] },
		"bad active":      func(st *State) { m := st.Modules["echo"]; m.Active.SHA256 = "../../etc/passwd"; st.Modules["echo"] = m },
		"bad previous": func(st *State) {
			m := st.Modules["echo"]
			m.Previous = &signing.ReleaseRef{Name: "echo"}
			st.Modules["echo"] = m
		},
		"previous of other": func(st *State) {
			m := st.Modules["echo"]
			p := ref("other", "1.0.0", 9)
			m.Previous = &p
			st.Modules["echo"] = m
		},
		"empty source":   func(st *State) { st.Applied[""] = 1 },
		"long source":    func(st *State) { st.Applied[strings.Repeat("a", 257)] = 1 },
		"newline status": func(st *State) { m := st.Modules["echo"]; m.Status = "a\nb"; st.Modules["echo"] = m },
	}
	if err := s.Update(set(sampleState())); err != nil {
		t.Fatal(err)
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			err := s.Update(func(st *State) error { change(st); return nil })
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Update = %v, want ErrInvalid", err)
			}
			if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
				t.Fatal("a refused Update changed the state")
			}
		})
	}
}

// A long reason (a whole error message) never stops a rollback from being recorded.
func TestUpdateCutsLongReason(t *testing.T) {
	s := open(t, t.TempDir())
	long := strings.Repeat("é", MaxReasonLen)
	err := s.Update(func(st *State) error {
		st.Modules["echo"] = ModuleState{Active: ref("echo", "1.0.0", 1), Status: StatusRolledBack, Reason: long}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := s.State().Modules["echo"].Reason
	if len(got) > MaxReasonLen || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Fatalf("reason cut to %d bytes: %q...", len(got), got[:20])
	}
}

// crashingWrite stands in for atomicfile.Write on a device that loses power after the
// temporary file got half its bytes and before the rename.
func crashingWrite(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if err := os.WriteFile(filepath.Join(dir, "."+base+".tmp-crash"), data[:len(data)/2], perm); err != nil {
		return err
	}
	return errors.New("power cut")
}

// state.json is replaced atomically: a write that fails before the rename leaves the old
// file whole, in memory and on disk, and the next Open reads it and removes the leftover.
func TestUpdateWriteFailureKeepsPreviousState(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Update(set(sampleState())); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(dir, "state.json"))

	s.writeFile = crashingWrite
	err := s.Update(func(st *State) error {
		st.Applied["group/kitchen"] = 43
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "power cut") {
		t.Fatalf("Update with a failing write = %v", err)
	}
	if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatalf("a failed write changed the state in memory: applied %v", got.Applied)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "state.json")), before) {
		t.Fatal("a failed write changed state.json")
	}
	if len(glob(t, dir, ".state.json.tmp-*")) != 1 {
		t.Fatal("the crash left no temporary file; the test does not test what it says")
	}

	s.Close()
	s = open(t, dir)
	if got := s.State(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatalf("after the crash, Open read %+v", got)
	}
	if left := glob(t, dir, ".state.json.tmp-*"); len(left) != 0 {
		t.Fatalf("Open left %v", left)
	}
}

// Temporary files of atomic writes interrupted anywhere in the store are removed at Open;
// downloads are kept so that they resume.
func TestOpenRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	d := digest(wasm(100, 1))
	p, _, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, []byte("half a module"))
	s.Close()
	temps := []string{
		filepath.Join(dir, ".state.json.tmp-123"),
		filepath.Join(dir, ".trust.json.tmp-456"),
		filepath.Join(dir, "releases", ".echo@1.0.0@"+d+".dsse.json.tmp-789"),
	}
	for _, p := range temps {
		if err := os.WriteFile(p, []byte("{\"vers"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	for _, p := range temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	if _, have, _ := s.Partial(d); have != int64(len("half a module")) {
		t.Errorf("the download has %d bytes after Open, want it kept", have)
	}
	if got := s.State(); !reflect.DeepEqual(got, NewState()) {
		t.Errorf("state = %+v", got)
	}
}

// corruptStates are state.json contents that must not load. They seed FuzzState too.
var corruptStates = map[string]string{
	"empty":           "",
	"spaces":          " \n",
	"garbage":         "\x00\x01\x02 not json",
	"array":           "[1,2]",
	"null":            "null",
	"no version":      `{"applied":{},"modules":{}}`,
	"string version":  `{"version":"1"}`,
	"float version":   `{"version":1.5}`,
	"truncated":       `{"version":1,"applied":{"group/kitchen":4`,
	"trailing data":   `{"version":1}{"version":1}`,
	"unknown field":   `{"version":1,"modulez":{}}`,
	"negative seq":    `{"version":1,"applied":{"group/kitchen":-1}}`,
	"bad module name": `{"version":1,"modules":{"../x":{"active":{"name":"../x","version":"1.0.0","sha256":"` + strings.Repeat("a", 64) + `","size":1}}}}`,
	"bad digest":      `{"version":1,"modules":{"x":{"active":{"name":"x","version":"1.0.0","sha256":"../../etc/passwd","size":1}}}}`,
	"previous only":   `{"version":1,"modules":{"x":{"previous":{"name":"x","version":"1.0.0","sha256":"` + strings.Repeat("a", 64) + `","size":1}}}}`,
	"bad time":        `{"version":1,"modules":{"x":{"active":{"name":"x","version":"1.0.0","sha256":"` + strings.Repeat("a", 64) + `","size":1},"since":"yesterday"}}}`,
}

func TestCorruptStateIsMovedAsideAndReported(t *testing.T) {
	valid, err := json.Marshal(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"half of a real file": string(valid[:len(valid)/2])}
	for k, v := range corruptStates {
		cases[k] = v
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, zerolog.New(zerolog.NewTestWriter(t)))
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged state.json succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			aside := glob(t, dir, "state.json.corrupt-*")
			if len(aside) != 1 || !strings.Contains(err.Error(), aside[0]) {
				t.Fatalf("moved aside to %v; the error %q must name the file", aside, err)
			}
			if !bytes.Equal(readFile(t, aside[0]), []byte(content)) {
				t.Fatal("the moved-aside file differs from the damaged one")
			}
			// Only now, knowingly, does the store start empty.
			s = open(t, dir)
			if got := s.State(); !reflect.DeepEqual(got, NewState()) {
				t.Fatalf("State after the damaged file was moved aside = %+v", got)
			}
		})
	}
}

// A state.json of a version this agent does not know (a newer agent wrote it, then was
// downgraded) is refused and left alone: moving it aside would throw away the newer
// agent's state.
func TestUnknownStateVersionIsLeftInPlace(t *testing.T) {
	for _, content := range []string{`{"version":2,"whatever":[]}`, `{"version":0}`, `{"version":-1}`} {
		dir := t.TempDir()
		p := filepath.Join(dir, "state.json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, zerolog.Nop())
		if err == nil {
			s.Close()
			t.Fatalf("Open of %s succeeded", content)
		}
		if !errors.Is(err, ErrStateVersion) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open of %s = %v, want ErrStateVersion", content, err)
		}
		if !bytes.Equal(readFile(t, p), []byte(content)) || len(glob(t, dir, "state.json.corrupt-*")) != 0 {
			t.Fatalf("state.json of another version was moved or changed")
		}
		// The failed Open released the directory.
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		open(t, dir).Close()
	}
}
