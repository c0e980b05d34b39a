package modules_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
			t.Errorf("%s: not committed: %v (run make modules)", rel, err)
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
