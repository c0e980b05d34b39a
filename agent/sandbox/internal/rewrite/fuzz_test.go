package rewrite

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
)

// maxFuzzCompile is the largest input the fuzz target also compiles with wazero (twice);
// larger ones, the Go example of 3 MiB, are only instrumented (TestRepositoryModules
// compiles them).
const maxFuzzCompile = 1 << 20

var fuzzRuntime = sync.OnceValue(func() wazero.Runtime {
	// The interpreter: it validates like the compiler and compiles much faster.
	return wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigInterpreter())
})

// fuzzCompile compiles wasm with wazero and reports its panic or its error.
func fuzzCompile(wasm []byte) (panicked any, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	ctx := context.Background()
	cm, err := fuzzRuntime().CompileModule(ctx, wasm)
	if err == nil {
		cm.Close(ctx)
	}
	return nil, err
}

// repoWasm lists every .wasm file of the repository.
func repoWasm(t testing.TB) []string {
	t.Helper()
	var files []string
	root := "../../../.."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "node_modules"):
			return filepath.SkipDir
		case !d.IsDir() && strings.HasSuffix(path, ".wasm"):
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found only %d .wasm files under %s", len(files), root)
	}
	return files
}

// mutations returns a few damaged copies of a module: cut short, a section's size or a
// byte of its code changed, sections repeated or swapped.
func mutations(t testing.TB, wasm []byte) [][]byte {
	t.Helper()
	secs := sectionsOf(t, wasm)
	rebuild := func(ss []section) []byte {
		out := append([]byte(nil), header...)
		for _, s := range ss {
			out = append(out, sec(s.id, s.body)...)
		}
		return out
	}
	var out [][]byte
	out = append(out, wasm[:len(wasm)/2], wasm[:len(wasm)-1])
	if len(secs) >= 2 {
		swapped := append([]section(nil), secs...)
		swapped[0], swapped[1] = swapped[1], swapped[0]
		out = append(out, rebuild(swapped), rebuild(append(append([]section(nil), secs...), secs[len(secs)-1])))
	}
	for i, s := range secs {
		if s.id != secCode || len(s.body) < 4 {
			continue
		}
		for _, at := range []int{len(s.body) / 3, len(s.body) / 2, len(s.body) - 2} {
			for _, v := range []byte{0x03, 0x0b, 0x0f, 0x10, 0x63} {
				m := append([]section(nil), secs...)
				body := append([]byte(nil), s.body...)
				body[at] = v
				m[i] = section{s.id, body}
				out = append(out, rebuild(m))
			}
		}
	}
	// A section size one too large.
	if len(wasm) > 10 {
		b := append([]byte(nil), wasm...)
		b[9]++
		out = append(out, b)
	}
	return out
}

// FuzzInstrument: Instrument never panics, and it never makes an invalid module of a valid
// one. When it accepts its input and wazero compiles the input, wazero must compile the
// output; when wazero does not compile the input, the output may fail to compile, but
// without a panic in wazero that the input did not cause.
func FuzzInstrument(f *testing.F) {
	for _, path := range repoWasm(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if len(b) < 64<<10 {
			for _, m := range mutations(f, b) {
				f.Add(m)
			}
		}
	}
	for _, c := range runCases {
		b := wat(f, c.wat, c.flags...)
		f.Add(b)
		for _, m := range mutations(f, b) {
			f.Add(m)
		}
	}
	f.Add(wat(f, writtenModule))
	f.Add(hiddenLoopModule())
	f.Add(fuelWriterModule())
	f.Add(tableInitModule(2))
	f.Add([]byte(nil))
	f.Add(append([]byte(nil), header...))

	f.Fuzz(func(t *testing.T, wasm []byte) {
		for _, opts := range fuzzOptions {
			fuzzOne(t, wasm, opts)
		}
	})
}

// fuzzOptions are the rewrites each fuzz input goes through: the plain one, and the one the
// sandbox's compiler uses, which also records writes to memory.
var fuzzOptions = []Options{{}, {Written: true, Tracked: func(module, _ string) bool { return module == "env" }}}

func fuzzOne(t *testing.T, wasm []byte, opts Options) {
	res, err := InstrumentWith(wasm, opts) // a panic fails the target by itself
	if err != nil {
		if res != nil {
			t.Fatalf("Instrument returned a result and the error %v", err)
		}
		return
	}
	if res == nil || len(res.Wasm) < 8 || !bytes.Equal(res.Wasm[:8], wasm[:8]) {
		t.Fatalf("Instrument returned no module, or one without the header")
	}
	// The output carries the rewrite's names: instrumenting it again is refused.
	if _, err := InstrumentWith(res.Wasm, opts); err == nil {
		t.Fatalf("Instrument accepted its own output")
	}
	if len(wasm) > maxFuzzCompile {
		return
	}
	inPanic, inErr := fuzzCompile(wasm)
	outPanic, outErr := fuzzCompile(res.Wasm)
	if outPanic != nil && inPanic == nil {
		t.Fatalf("wazero panics compiling the instrumented module (written: %v), not the input (input error: %v): %v", opts.Written, inErr, outPanic)
	}
	if inErr == nil && inPanic == nil && outErr != nil {
		t.Fatalf("wazero compiles the input but not the instrumented module (written: %v): %v", opts.Written, outErr)
	}
}

// The seeds must include the modules the other tests are about.
func TestFuzzSeedsFound(t *testing.T) {
	var names []string
	for _, f := range repoWasm(t) {
		names = append(names, filepath.Base(f))
	}
	for _, want := range []string{"echo.wasm", "moving-average.wasm", "infinite-loop.wasm", "too-large.wasm"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s among the seeds %v", want, names)
		}
	}
}
