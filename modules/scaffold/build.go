package scaffold

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/wasmfleet/wasmfleet/modules"
)

// Options tune Build. The zero value works.
type Options struct {
	// Stderr receives the tools' diagnostics (compiler warnings and errors); nil discards
	// them, and a failed build's error then ends with the last of them.
	Stderr io.Writer
	// Env is the tools' environment; nil means this process's. Tools are looked up in this
	// process's PATH.
	Env []string
}

// Result is what Build made.
type Result struct {
	Lang     Lang
	Manifest *modules.Manifest
	Wasm     string   // path of the module built: DIR/NAME.wasm
	Size     int64    // its size in bytes
	Command  []string // the command that built it
}

// MissingToolsError means the toolchain a handler needs is not installed.
type MissingToolsError struct {
	Lang    Lang
	Missing []string // what was not found, e.g. "clang", "wasi-libc (crt1-reactor.o)"
	Install string   // how to install the whole toolchain, e.g. "install with: sudo apt-get install wabt"
}

func (e *MissingToolsError) Error() string {
	return fmt.Sprintf("cannot build a %s module: %s not found; %s",
		e.Lang, strings.Join(e.Missing, ", "), e.Install)
}

// The toolchains' install hints. C needs all four Debian packages: clang drives the build,
// wasm-ld (lld) links, wasi-libc has the start files and libc, libclang-rt-dev-wasm32 the
// compiler's builtins, which clang links into every module that is not -nostdlib.
const (
	installC   = "install with: sudo apt-get install clang lld wasi-libc libclang-rt-dev-wasm32"
	installWAT = "install with: sudo apt-get install wabt"
	installGo  = "install Go " + GoVersion + " or later (Debian 13's golang-go, or https://go.dev/dl/)"
)

// Detect tells the language of the handler in dir from its sources and manifest: a go.mod
// is Go, one .wat file is WAT, .c files are C (handler/v1) or wasi-command by the
// manifest's abi.
func Detect(dir string, m *modules.Manifest) (Lang, error) {
	has := func(pattern string) []string {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		return matches
	}
	gomod, wats, cs := has("go.mod"), has("*.wat"), has("*.c")
	var kinds []string
	for _, k := range []struct {
		what  string
		found bool
	}{{"go.mod", len(gomod) > 0}, {".wat", len(wats) > 0}, {".c", len(cs) > 0}} {
		if k.found {
			kinds = append(kinds, k.what)
		}
	}
	switch {
	case len(kinds) == 0:
		return "", fmt.Errorf("%s: no sources (a go.mod, one .wat file, or .c files)", dir)
	case len(kinds) > 1:
		return "", fmt.Errorf("%s: sources of more than one kind (%s): keep one handler per directory", dir, strings.Join(kinds, ", "))
	case len(gomod) > 0:
		return Go, nil
	case len(wats) > 1:
		return "", fmt.Errorf("%s: %d .wat files; a WAT handler is one file", dir, len(wats))
	case len(wats) == 1:
		return WAT, nil
	case m.ABI == modules.ABIWASICommand:
		return WASICommand, nil
	}
	return C, nil
}

// ReadManifest reads and validates dir's manifest.yaml.
func ReadManifest(dir string) (*modules.Manifest, error) {
	p := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s has no %s: is it a handler directory? (wasmfleet new creates one): %w", dir, ManifestFile, err)
	} else if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := modules.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// Build validates dir's manifest, then builds the handler in dir into DIR/NAME.wasm (NAME
// from the manifest) with its language's toolchain. A missing tool is a
// *MissingToolsError; a failed compilation is an error naming the tool, whose diagnostics
// went to opts.Stderr. The module is written to a temporary file and renamed into place,
// so a failed build leaves the previous one.
func Build(ctx context.Context, dir string, opts Options) (*Result, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	lang, err := Detect(dir, m)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, m.Name+".wasm")
	tmp := filepath.Join(dir, "."+m.Name+".wasm.tmp")
	defer os.Remove(tmp)

	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	var argv []string
	switch lang {
	case C, WASICommand:
		if err := checkC(ctx, lang, env); err != nil {
			return nil, err
		}
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.c"))
		// The flags of modules/build.sh, without -Werror (warnings are shown, not fatal): -O2,
		// no debug info, names stripped, so the same sources give the same bytes.
		argv = []string{"clang", "--target=wasm32-wasi", "-O2", "-fno-unroll-loops", "-Wall", "-Wextra", "-I", "."}
		if lang == C {
			argv = append(argv, "-mexec-model=reactor")
		}
		argv = append(argv, "-Wl,--strip-all", "-o", tmp)
		for _, s := range srcs {
			argv = append(argv, filepath.Base(s))
		}
	case WAT:
		if _, err := exec.LookPath("wat2wasm"); err != nil {
			return nil, &MissingToolsError{Lang: lang, Missing: []string{"wat2wasm"}, Install: installWAT}
		}
		wats, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
		argv = []string{"wat2wasm", filepath.Base(wats[0]), "-o", tmp}
	case Go:
		if _, err := exec.LookPath("go"); err != nil {
			return nil, &MissingToolsError{Lang: lang, Missing: []string{"go"}, Install: installGo}
		}
		// The flags of modules/build-go.sh: a handler/v1 module is a WASI reactor
		// (-buildmode=c-shared exports _initialize); a wasi-command one a plain program.
		argv = []string{"go", "build", "-trimpath", "-buildvcs=false"}
		if m.ABI == modules.ABIHandlerV1 {
			argv = append(argv, "-buildmode=c-shared")
		}
		argv = append(argv, "-ldflags=-s -w -buildid=", "-o", tmp, ".")
		env = append(env[:len(env):len(env)], "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	}
	if err := run(ctx, dir, env, argv, opts.Stderr); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("build %s: %w", dir, err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", dir, err)
	}
	shown := make([]string, len(argv)) // the command as it would be typed in dir
	for i, a := range argv {
		shown[i] = a
		if a == tmp {
			shown[i] = filepath.Base(out)
		}
	}
	return &Result{Lang: lang, Manifest: m, Wasm: out, Size: fi.Size(), Command: shown}, nil
}

// checkC finds clang, wasm-ld, wasi-libc's start file and the compiler's wasm32 builtins,
// asking clang where it looks for the last two (Debian: /usr/lib/wasm32-wasi and
// /usr/lib/llvm-*/lib/clang/*/lib/wasi).
func checkC(ctx context.Context, lang Lang, env []string) error {
	var missing []string
	clang, err := exec.LookPath("clang")
	if err != nil {
		missing = append(missing, "clang")
	}
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		missing = append(missing, "wasm-ld (lld)")
	}
	if clang != "" {
		crt := "crt1-reactor.o"
		if lang == WASICommand {
			crt = "crt1-command.o"
		}
		if !clangFinds(ctx, clang, env, "-print-file-name="+crt) {
			missing = append(missing, "wasi-libc ("+crt+")")
		}
		if !clangFinds(ctx, clang, env, "-print-libgcc-file-name") {
			missing = append(missing, "libclang-rt-dev-wasm32 (libclang_rt.builtins-wasm32.a)")
		}
	}
	if len(missing) > 0 {
		return &MissingToolsError{Lang: lang, Missing: missing, Install: installC}
	}
	return nil
}

// clangFinds asks clang for a file's path (it prints the bare name when it has none) and
// reports whether the file exists.
func clangFinds(ctx context.Context, clang string, env []string, flag string) bool {
	cmd := exec.CommandContext(ctx, clang, "--target=wasm32-wasi", flag)
	cmd.Env = env
	out, err := cmd.Output()
	p := strings.TrimSpace(string(out))
	if err != nil || !filepath.IsAbs(p) {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// run runs argv in dir, its output to stderr (and the last of it kept for the error).
func run(ctx context.Context, dir string, env, argv []string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	var tail bytes.Buffer
	w := io.Writer(&tail)
	if stderr != nil {
		w = io.MultiWriter(stderr, &tail)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		if stderr != nil {
			return fmt.Errorf("%s: %w", argv[0], err)
		}
		msg := strings.TrimSpace(tail.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return fmt.Errorf("%s: %w: %s", argv[0], err, msg)
	}
	return nil
}
