package scaffold

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/modules"
)

// The end-to-end test (new -> build -> run for every language) is in cmd/wasmfleet/internal/cli, where
// `wasmfleet run` lives; these test the package's own rules.

// TestManifests: every language's manifest parses, carries the name, grants publishing to
// NAME/{device}/out and is built the way Detect will tell.
func TestManifests(t *testing.T) {
	for _, lang := range Langs {
		dir := filepath.Join(t.TempDir(), "x")
		if _, err := New(dir, lang, "sensor-7"); err != nil {
			t.Fatal(err)
		}
		m, err := ReadManifest(dir)
		if err != nil {
			t.Fatalf("%s: %v", lang, err)
		}
		if m.Name != "sensor-7" || !m.MayPublish("sensor-7/pi-7/out", "pi-7") || m.Triggers[0].MQTT != "sensor-7/{device}/in" {
			t.Errorf("%s: manifest %+v", lang, m)
		}
		if got, err := Detect(dir, m); err != nil || got != lang {
			t.Errorf("%s: Detect = %s, %v", lang, got, err)
		}
	}
}

// TestNewFiles: the files of each language, the SDK among them byte for byte, and New into
// an existing empty directory.
func TestNewFiles(t *testing.T) {
	want := map[Lang][]string{
		C:           {"README.md", "event.json", "h.c", "manifest.yaml", "wasmfleet.h"},
		Go:          {"README.md", "event.json", "go.mod", "handler.go", "handler_test.go", "main_other.go", "main_wasip1.go", "manifest.yaml", "sdk/doc.go", "sdk/exports_wasip1.go", "sdk/go.mod", "sdk/host_wasip1.go", "sdk/wasmfleet_wasip1.go"},
		WAT:         {"README.md", "event.json", "h.wat", "manifest.yaml"},
		WASICommand: {"README.md", "event.json", "h.c", "manifest.yaml"},
	}
	for _, lang := range Langs {
		dir := t.TempDir() // exists and is empty: allowed
		files, err := New(dir, lang, "h")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(files, want[lang]) {
			t.Errorf("%s: files %q, want %q", lang, files, want[lang])
		}
		for _, f := range files {
			src := ""
			switch {
			case f == "wasmfleet.h":
				src = "../sdk/c/wasmfleet.h"
			case strings.HasPrefix(f, "sdk/") && f != "sdk/go.mod":
				src = "../sdk/go/" + strings.TrimPrefix(f, "sdk/")
			default:
				continue
			}
			a, _ := os.ReadFile(src)
			b, _ := os.ReadFile(filepath.Join(dir, f))
			if len(a) == 0 || string(a) != string(b) {
				t.Errorf("%s: %s is not a copy of %s", lang, f, src)
			}
		}
	}
}

// TestNewRefuses: a non-empty directory, a bad name or language; nothing is left behind.
func TestNewRefuses(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(full, C, "h"); err == nil || !strings.Contains(err.Error(), "already exists and is not empty") {
		t.Errorf("non-empty directory: %v", err)
	}
	parent := t.TempDir()
	for _, c := range []struct {
		lang Lang
		name string
	}{{C, "H"}, {C, ""}, {C, "-h"}, {C, "a.b"}, {C, "a/b"}, {C, ".."}, {"rust", "h"}, {"", "h"}} {
		if _, err := New(filepath.Join(parent, "d"), c.lang, c.name); err == nil {
			t.Errorf("New(%q, %q) succeeded", c.lang, c.name)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("refused New calls left %v", entries)
	}
}

// TestDetect: the language from the sources, and the directories it cannot tell.
func TestDetect(t *testing.T) {
	handler := &modules.Manifest{ABI: modules.ABIHandlerV1}
	command := &modules.Manifest{ABI: modules.ABIWASICommand}
	for _, c := range []struct {
		name  string
		files []string
		m     *modules.Manifest
		want  Lang
		err   string
	}{
		{"c", []string{"a.c", "b.c", "x.h"}, handler, C, ""},
		{"wasi-command", []string{"main.c"}, command, WASICommand, ""},
		{"go", []string{"go.mod", "main.go"}, handler, Go, ""},
		{"go-command", []string{"go.mod"}, command, Go, ""},
		{"wat", []string{"h.wat"}, handler, WAT, ""},
		{"none", []string{"README.md"}, handler, "", "no sources"},
		{"mixed", []string{"a.c", "h.wat"}, handler, "", "more than one kind (.wat, .c)"},
		{"two-wat", []string{"a.wat", "b.wat"}, handler, "", "2 .wat files"},
	} {
		dir := t.TempDir()
		for _, f := range c.files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Detect(dir, c.m)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: Detect = %q, %v; want %q, error with %q", c.name, got, err, c.want, c.err)
		}
	}
}

// TestReadManifestMalformed: a missing, unreadable or invalid manifest.yaml is an error that
// says which file and what is wrong.
func TestReadManifestMalformed(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "has no manifest.yaml") {
		t.Errorf("missing: %v", err)
	}
	for text, want := range map[string]string{
		"name: [":                   "not valid YAML",
		"name: x\nversion: 1.0.0\n": "abi: is required",
		"\x00\xff":                  "invalid manifest",
		strings.Repeat("#", modules.MaxManifestSize+1): "larger than",
	} {
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ManifestFile) {
			t.Errorf("%.20q: %v, want an error with %q", text, err, want)
		}
	}
}

// TestGoScaffoldTests: the Go scaffold's own test passes natively and go vet is clean, so the
// split between portable logic and the wasip1 wiring works as its README says.
func TestGoScaffoldTests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	if _, err := New(dir, Go, "h"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"vet", "./..."}, {"test", "./..."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// And the wasip1 side vets too.
	cmd := exec.Command("go", "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 go vet: %v\n%s", err, out)
	}
}

// TestBuildWritesOnlyTheModule: a build leaves the directory as it was plus NAME.wasm.
func TestBuildWritesOnlyTheModule(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	files, err := New(dir, WAT, "h")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Wasm != filepath.Join(dir, "h.wasm") || res.Size < 8 || res.Lang != WAT ||
		strings.Join(res.Command, " ") != "wat2wasm h.wat -o h.wasm" {
		t.Errorf("result %+v", res)
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if want := append(slices.Clone(files), "h.wasm"); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("directory after build: %q, want %q", got, want)
	}
}

// FuzzValidName: ValidName accepts exactly the names a manifest accepts.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"h", "sensor-7", "H", "-h", "a_b", "a/b", "..", "", strings.Repeat("a", 63), strings.Repeat("a", 64), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		m := modules.Manifest{Name: name, Version: "0.1.0", ABI: modules.ABIHandlerV1}
		if (ValidName(name) == nil) != (m.Validate() == nil) {
			t.Fatalf("ValidName(%q) = %v, manifest validation = %v", name, ValidName(name), m.Validate())
		}
	})
}
