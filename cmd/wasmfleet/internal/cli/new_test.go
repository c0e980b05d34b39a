package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive `wasmfleet new`, `build` and `run` in-process, as a developer types them,
// with absolute paths (other tests in this package chdir). They need the real toolchains
// (make deps installs clang, lld, wasi-libc, libclang-rt-dev-wasm32 and wabt; Go is the one
// running the tests).

// cli runs `wasmfleet ARGS...` and returns what it did.
func cli(t *testing.T, args ...string) runOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, args, strings.NewReader(""), &out, &errb)
	return runOutcome{code, out.String(), errb.String()}
}

// scaffoldOutput is what each scaffold publishes for its event.json ({"value": 21.5} and a
// newline: 16 bytes) on device pi-7.
var scaffoldOutput = map[string]string{
	"c":            `{"topic":"%s/pi-7/out","payload":{"device":"pi-7","greeting":"hello","bytes":16}}`,
	"go":           `{"topic":"%s/pi-7/out","payload":{"device":"pi-7","greeting":"hello","bytes":16}}`,
	"wasi-command": `{"topic":"%s/pi-7/out","payload":{"device":"pi-7","greeting":"hello","bytes":16}}`,
	"wat":          `{"topic":"%s/pi-7/out","payload":{"value":21.5}}`,
}

// TestNewBuildRun: for every language, new -> build -> run with the scaffold's sample event
// publishes exactly what its README says.
func TestNewBuildRun(t *testing.T) {
	for _, lang := range []string{"c", "go", "wat", "wasi-command"} {
		t.Run(lang, func(t *testing.T) {
			name := "my-" + lang
			dir := filepath.Join(t.TempDir(), name)
			o := cli(t, "new", "--dir", dir, lang, name)
			if o.code != 0 || o.stderr != "" || !strings.Contains(o.stdout, "wasmfleet build "+dir) {
				t.Fatalf("new: exit %d\nstdout: %s\nstderr: %s", o.code, o.stdout, o.stderr)
			}
			readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(readme), "\n"); n != 3 {
				t.Errorf("README.md has %d lines, want 3:\n%s", n, readme)
			}

			o = cli(t, "build", dir)
			wasm := filepath.Join(dir, name+".wasm")
			if o.code != 0 || !strings.HasPrefix(o.stdout, "built "+wasm+" ("+name+", ") {
				t.Fatalf("build: exit %d\nstdout: %s\nstderr: %s", o.code, o.stdout, o.stderr)
			}

			want := strings.Replace(scaffoldOutput[lang], "%s", name, 1) + "\n"
			o = cli(t, "run", "--manifest", filepath.Join(dir, "manifest.yaml"), "--device", "pi-7",
				"--event-file", filepath.Join(dir, "event.json"), wasm)
			if o.code != 0 || o.stdout != want {
				t.Fatalf("run: exit %d\nstdout: %q\nwant:   %q\nstderr: %s", o.code, o.stdout, want, o.stderr)
			}
			// The README's run line is the command just run, with this output.
			if !strings.Contains(string(readme), "`"+strings.TrimSuffix(want, "\n")+"`") {
				t.Errorf("README.md does not show the output %s:\n%s", want, readme)
			}
		})
	}
}

// TestBuildMissingToolchain: with nothing on PATH, build names the tools and the Debian
// packages (or, for Go, where to get it) and exits 2, and writes no module.
func TestBuildMissingToolchain(t *testing.T) {
	dirs := map[string]string{}
	for _, lang := range []string{"c", "go", "wat", "wasi-command"} {
		dirs[lang] = filepath.Join(t.TempDir(), lang)
		if o := cli(t, "new", "--dir", dirs[lang], lang, "h-"+lang); o.code != 0 {
			t.Fatalf("new %s: %+v", lang, o)
		}
	}
	t.Setenv("PATH", "")
	for lang, want := range map[string]string{
		"c":            "error: toolchain: cannot build a C handler/v1 module: clang, wasm-ld (lld) not found; install with: sudo apt-get install clang lld wasi-libc libclang-rt-dev-wasm32\n",
		"wasi-command": "error: toolchain: cannot build a C wasi-command module: clang, wasm-ld (lld) not found; install with: sudo apt-get install clang lld wasi-libc libclang-rt-dev-wasm32\n",
		"wat":          "error: toolchain: cannot build a WAT handler/v1 module: wat2wasm not found; install with: sudo apt-get install wabt\n",
		"go":           "error: toolchain: cannot build a Go handler/v1 module: go not found; install Go 1.24 or later (Debian 13's golang-go, or https://go.dev/dl/)\n",
	} {
		o := cli(t, "build", dirs[lang])
		if o.code != 2 || o.stdout != "" || o.stderr != want {
			t.Errorf("%s: exit %d\nstdout: %q\nstderr: %q\nwant exit 2 and stderr %q", lang, o.code, o.stdout, o.stderr, want)
		}
		if _, err := os.Stat(filepath.Join(dirs[lang], "h-"+lang+".wasm")); err == nil {
			t.Errorf("%s: a module was written", lang)
		}
	}
}

// TestBuildValidatesManifestFirst: an invalid manifest is reported before any tool is looked
// for (PATH is empty here, so reaching the toolchain would say "toolchain").
func TestBuildValidatesManifestFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	if o := cli(t, "new", "--dir", dir, "c", "h"); o.code != 0 {
		t.Fatalf("new: %+v", o)
	}
	mf := filepath.Join(dir, "manifest.yaml")
	raw, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(raw), "timeout: 50ms", "timeout: 2h", 1)
	bad = strings.Replace(bad, "version: 0.1.0", "version: one", 1)
	if err := os.WriteFile(mf, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "")
	o := cli(t, "build", dir)
	if o.code != 2 || !strings.HasPrefix(o.stderr, "error: build: "+mf+": invalid manifest: ") ||
		!strings.Contains(o.stderr, "version: ") || !strings.Contains(o.stderr, "limits.timeout: 2h0m0s is out of range") {
		t.Fatalf("exit %d\nstderr: %s", o.code, o.stderr)
	}
}

// TestBuildCompileError: the compiler's messages reach stderr, the exit is 2, and the module
// built before stays as it was.
func TestBuildCompileError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	if o := cli(t, "new", "--dir", dir, "c", "h"); o.code != 0 {
		t.Fatalf("new: %+v", o)
	}
	if o := cli(t, "build", dir); o.code != 0 {
		t.Fatalf("build: %+v", o)
	}
	wasm := filepath.Join(dir, "h.wasm")
	before, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "h.c")
	if err := os.WriteFile(src, []byte("int broken(void) { return }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := cli(t, "build", dir)
	if o.code != 2 || !strings.Contains(o.stderr, "h.c:1:") || !strings.Contains(o.stderr, "error: build: clang: exit status 1") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", o.code, o.stdout, o.stderr)
	}
	after, err := os.ReadFile(wasm)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the previous module changed or went: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// TestNewRefuses: bad names and languages are usage errors (exit 1) that create nothing; a
// directory that exists and is not empty is refused (exit 2) and left alone.
func TestNewRefuses(t *testing.T) {
	parent := t.TempDir()
	for _, args := range [][]string{
		{"c", "Hello"}, {"c", "-x"}, {"c", "a_b"}, {"c", "../escape"}, {"c", "a/b"}, {"c", "."},
		{"c", ".."}, {"c", "hello world"}, {"c", strings.Repeat("x", 64)}, {"c", "héllo"},
		{"rust", "hello"}, {"C", "hello"}, {"c"}, {"c", "a", "b"}, {},
	} {
		o := cli(t, append([]string{"new", "--dir", filepath.Join(parent, "out")}, args...)...)
		if o.code != 1 || o.stdout != "" || !strings.Contains(o.stderr, "error: ") {
			t.Errorf("new %q: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and an error", args, o.code, o.stdout, o.stderr)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("refused commands created %v", entries)
	}
	// Without --dir, "../escape" would have been created beside the working directory; the
	// name rule refuses it before any path is made.

	full := filepath.Join(parent, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := cli(t, "new", "--dir", full, "c", "full")
	if o.code != 2 || !strings.Contains(o.stderr, "already exists and is not empty") {
		t.Fatalf("new into a non-empty directory: %+v", o)
	}
	entries, _ := os.ReadDir(full)
	if len(entries) != 1 {
		t.Fatalf("the directory was changed: %v", entries)
	}
}
