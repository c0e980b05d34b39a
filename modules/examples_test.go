package modules_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/modules"
)

// The example handlers and the hostile test modules, relative to this package.
const (
	examplesDir = "examples"
	hostileDir  = "../agent/sandbox/testdata/hostile"
)

// TestExampleManifests parses every example's manifest.yaml and checks each example directory
// holds its source, its built module and a README.
func TestExampleManifests(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(examplesDir, "*", "manifest.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found under %s (%v)", examplesDir, err)
	}
	for _, path := range dirs {
		dir := filepath.Dir(path)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			m := parseFile(t, path)
			if m.Name != name {
				t.Errorf("manifest name %q, want the directory name %q", m.Name, name)
			}
			for _, f := range []string{name + ".wasm", "README.md"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("missing %s: %v", f, err)
				}
			}
			srcs, _ := filepath.Glob(filepath.Join(dir, "*.[cg]*"))
			wats, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
			if len(srcs)+len(wats) == 0 {
				t.Errorf("no source (.c, .go or .wat) beside %s.wasm", name)
			}
		})
	}
}

// TestHostileManifests parses the manifest of every hostile module and checks each has its
// source and its built module.
func TestHostileManifests(t *testing.T) {
	wats, err := filepath.Glob(filepath.Join(hostileDir, "*.wat"))
	if err != nil || len(wats) == 0 {
		t.Fatalf("no hostile modules found under %s (%v)", hostileDir, err)
	}
	for _, wat := range wats {
		name := strings.TrimSuffix(filepath.Base(wat), ".wat")
		t.Run(name, func(t *testing.T) {
			m := parseFile(t, filepath.Join(hostileDir, name+".yaml"))
			if m.Name != name {
				t.Errorf("manifest name %q, want %q", m.Name, name)
			}
			if m.ABI != modules.ABIHandlerV1 {
				t.Errorf("abi %q, want %s", m.ABI, modules.ABIHandlerV1)
			}
			if _, err := os.Stat(filepath.Join(hostileDir, name+".wasm")); err != nil {
				t.Errorf("missing built module: %v", err)
			}
		})
	}
}

func parseFile(t *testing.T, path string) *modules.Manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := modules.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// TestModulesUpToDate rebuilds every module with build.sh, twice, into temporary
// directories: the two builds must be identical (reproducible) and equal to the committed
// .wasm files (up to date with their sources). Missing tools fail the test; they never skip
// it, so a machine without them cannot pass by accident.
func TestModulesUpToDate(t *testing.T) {
	for _, tool := range []string{"clang", "wasm-ld", "wat2wasm", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run make deps", tool)
		}
	}
	a, b := build(t), build(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = filepath.WalkDir(a, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		n++
		first, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		second, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil {
			t.Errorf("%s: built once but not twice: %v", rel, err)
			return nil
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s: two builds differ (%d and %d bytes): the build is not reproducible", rel, len(first), len(second))
		}
		committed, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s: missing: %v (run make modules, or make go-modules for the Go examples)", rel, err)
			return nil
		}
		if !bytes.Equal(first, committed) {
			t.Errorf("%s: committed module (%d bytes) differs from its source's build (%d bytes): run make modules", rel, len(committed), len(first))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("build.sh built nothing")
	}
	// Every committed .wasm must come from a source build.sh knows about.
	for _, dir := range []string{filepath.Join(examplesDir, "*"), hostileDir} {
		committed, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
		for _, c := range committed {
			abs, _ := filepath.Abs(c)
			rel, _ := filepath.Rel(root, abs)
			if _, err := os.Stat(filepath.Join(a, rel)); err != nil {
				t.Errorf("%s is committed but build.sh does not build it", rel)
			}
		}
	}
}

// build runs build.sh into a new temporary directory and returns it.
func build(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("bash", "build.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	return out
}

// TestExamplesRun runs the committed example modules in the agent's sandbox, as a device
// "dev-7" would, and checks what they publish.
func TestExamplesRun(t *testing.T) {
	store, err := kv.Open(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := sandbox.New(ctx, sandbox.Config{DeviceID: "dev-7", KV: store, WorkDir: t.TempDir(), MaxModuleSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)

	type event struct {
		payload string
		want    string // "topic payload", "" for nothing published, "error" for a handler failure
	}
	for _, tc := range []struct {
		name   string
		events []event
	}{
		{"threshold-alert", []event{
			{`{"value": 31.2}`, `alerts/dev-7/temperature {"device":"dev-7","value":31.2,"threshold":30.5}`},
			{`{"temperature":30.6}`, `alerts/dev-7/temperature {"device":"dev-7","value":30.6,"threshold":30.5}`},
			{`{"value": 30.5}`, ``},
			{`{"value": -3, "unit": "C"}`, ``},
			{`{"value": 31.2`, `error`},
			{`not json`, `error`},
			{`{"humidity": 40}`, `error`},
		}},
		{"echo", []event{
			{`hello`, `echo/dev-7 hello`},
			{``, `echo/dev-7 `},
		}},
		{"c-to-f", []event{
			{`{"celsius": 20}`, `converted/dev-7 {"fahrenheit":68}`},
			{`{"celsius": -40}`, `converted/dev-7 {"fahrenheit":-40}`},
			{`{"kelvin": 1}`, `error`},
		}},
		{"moving-average", []event{
			{`{"value": 10}`, `averages/dev-7 {"device":"dev-7","average":10,"count":1}`},
			{`{"value": 20}`, `averages/dev-7 {"device":"dev-7","average":15,"count":2}`},
			{`{"value": "x"}`, `error`}, // fails, so nothing is stored
			{`{"temperature": 30}`, `averages/dev-7 {"device":"dev-7","average":20,"count":3}`},
			{`{"value": 40}`, `averages/dev-7 {"device":"dev-7","average":25,"count":4}`},
			{`{"value": 50}`, `averages/dev-7 {"device":"dev-7","average":30,"count":5}`},
			{`{"value": 60}`, `averages/dev-7 {"device":"dev-7","average":40,"count":5}`},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(examplesDir, tc.name)
			m := parseFile(t, filepath.Join(dir, "manifest.yaml"))
			wasm, err := os.ReadFile(filepath.Join(dir, tc.name+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			mod, err := rt.Load(ctx, wasm, m)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer mod.Close(ctx)
			for _, ev := range tc.events {
				res, err := mod.Handle(ctx, sandbox.Event{Topic: "sensors/dev-7/temperature", Payload: []byte(ev.payload)})
				var got []string
				switch {
				case errors.Is(err, sandbox.ErrHandler):
					got = []string{"error"}
				case err != nil:
					t.Fatalf("%s: %v", ev.payload, err)
				default:
					for _, p := range res.Publishes {
						got = append(got, p.Topic+" "+string(p.Payload))
					}
				}
				if g := strings.Join(got, "\n"); g != ev.want {
					t.Errorf("%s: got %q, want %q", ev.payload, g, ev.want)
				}
			}
		})
	}
}
