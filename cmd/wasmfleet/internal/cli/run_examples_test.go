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

// These tests run the committed example handlers and hostile modules through `wasmfleet run`
// in-process (Main, as cmd/wasmfleet calls it) and check the command's whole contract: the
// exact JSON lines on stdout and exit 0; exit 2 with exactly one `error: <kind>: <detail>`
// line on stderr for anything the sandbox stopped; exit 1 for usage errors. They use absolute
// paths, so they do not depend on the working directory (other tests in this package chdir).

// repoPath returns the absolute path of a file in the repository (this package is two
// levels below the root).
func repoPath(t *testing.T, elem ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", "..", "..", ".."}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// example returns the manifest and module of modules/examples/NAME.
func example(t *testing.T, name string) (manifest, wasm string) {
	t.Helper()
	return repoPath(t, "modules", "examples", name, "manifest.yaml"),
		repoPath(t, "modules", "examples", name, name+".wasm")
}

// hostile returns the manifest and module of agent/sandbox/testdata/hostile/NAME.
func hostile(t *testing.T, name string) (manifest, wasm string) {
	t.Helper()
	dir := []string{"agent", "sandbox", "testdata", "hostile"}
	return repoPath(t, append(dir, name+".yaml")...), repoPath(t, append(dir, name+".wasm")...)
}

// runOutcome is what one `wasmfleet run` did.
type runOutcome struct {
	code           int
	stdout, stderr string
}

// runCLI runs `wasmfleet run ARGS...` with stdin. The context's deadline is far beyond any
// manifest's timeout: it is there so that a guest the sandbox failed to stop ends this test
// with an "error: cancelled:" line (which no case expects) instead of hanging it.
func runCLI(t *testing.T, stdin string, args ...string) runOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, append([]string{"run"}, args...), strings.NewReader(stdin), &out, &errb)
	return runOutcome{code, out.String(), errb.String()}
}

// wantPublished fails t unless o is exit 0, nothing on stderr, and exactly the lines want on
// stdout (none for a handler that published nothing).
func wantPublished(t *testing.T, o runOutcome, want ...string) {
	t.Helper()
	wantOut := ""
	if len(want) > 0 {
		wantOut = strings.Join(want, "\n") + "\n"
	}
	if o.code != 0 || o.stdout != wantOut || o.stderr != "" {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant exit 0, stdout %q, empty stderr", o.code, o.stdout, o.stderr, wantOut)
	}
}

// wantContained fails t unless o is exit 2, nothing on stdout (publishes of a failed event
// are dropped), and stderr exactly one line starting with prefix.
func wantContained(t *testing.T, o runOutcome, prefix string) {
	t.Helper()
	oneLine := strings.HasSuffix(o.stderr, "\n") && strings.Count(o.stderr, "\n") == 1
	if o.code != 2 || o.stdout != "" || !oneLine || !strings.HasPrefix(o.stderr, prefix) {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant exit 2, empty stdout, and one stderr line starting %q", o.code, o.stdout, o.stderr, prefix)
	}
}

func TestRunExamplesPublish(t *testing.T) {
	thrM, thrW := example(t, "threshold-alert")
	echoM, echoW := example(t, "echo")
	ctofM, ctofW := example(t, "c-to-f")

	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hot := file("hot.json", `{"temperature": 45}`)
	text := file("text.txt", "line one\nline two\n")

	const alert = `{"topic":"alerts/pi-7/temperature","payload":{"device":"pi-7","value":31.2,"threshold":30.5}}`
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  []string // exact stdout lines; none: the handler published nothing
	}{
		{name: "threshold-alert/below-threshold-publishes-nothing",
			args: []string{"--manifest", thrM, "--topic", "sensors/pi-7/temperature", "--device", "pi-7", "--event", `{"value": 20.5}`, thrW}},
		{name: "threshold-alert/at-threshold-publishes-nothing",
			args: []string{"--manifest", thrM, "--topic", "sensors/pi-7/temperature", "--device", "pi-7", "--event", `{"value": 30.5}`, thrW}},
		{name: "threshold-alert/above-threshold-alerts",
			args: []string{"--manifest", thrM, "--topic", "sensors/pi-7/temperature", "--device", "pi-7", "--event", `{"value": 31.2}`, thrW},
			want: []string{alert}},
		{name: "threshold-alert/flags-after-module",
			args: []string{thrW, "--manifest", thrM, "--device", "pi-7", "--event", `{"value": 31.2}`},
			want: []string{alert}},
		{name: "threshold-alert/interpreter",
			args: []string{"--interpreter", "--manifest", thrM, "--device", "pi-7", "--event", `{"value": 31.2}`, thrW},
			want: []string{alert}},
		{name: "threshold-alert/event-file",
			args: []string{"--manifest", thrM, "--device", "pi-7", "--event-file", hot, thrW},
			want: []string{`{"topic":"alerts/pi-7/temperature","payload":{"device":"pi-7","value":45,"threshold":30.5}}`}},
		{name: "threshold-alert/event-file-stdin", stdin: `{"value": 99.25}`,
			args: []string{"--manifest", thrM, "--event-file", "-", thrW},
			want: []string{`{"topic":"alerts/local/temperature","payload":{"device":"local","value":99.25,"threshold":30.5}}`}},
		{name: "c-to-f/publishes-to-output-topic",
			args: []string{"--manifest", ctofM, "--topic", "sensors/pi-7/celsius", "--device", "pi-7", "--event", `{"celsius": 20}`, ctofW},
			want: []string{`{"topic":"converted/pi-7","payload":{"fahrenheit":68}}`}},
		{name: "c-to-f/minus-forty",
			args: []string{"--manifest", ctofM, "--device", "pi-7", "--event", `{"celsius": -40}`, ctofW},
			want: []string{`{"topic":"converted/pi-7","payload":{"fahrenheit":-40}}`}},
		{name: "echo/json-payload-stays-json",
			args: []string{"--manifest", echoM, "--topic", "echo-in/pi-7", "--device", "pi-7", "--event", `{"a": [1, 2]}`, echoW},
			want: []string{`{"topic":"echo/pi-7","payload":{"a":[1,2]}}`}},
		{name: "echo/text-payload-is-a-string",
			args: []string{"--manifest", echoM, "--device", "pi-7", "--event-file", text, echoW},
			want: []string{`{"topic":"echo/pi-7","payload":"line one\nline two\n"}`}},
		{name: "echo/default-device-is-local",
			args: []string{"--manifest", echoM, "--event", "hi", echoW},
			want: []string{`{"topic":"echo/local","payload":"hi"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantPublished(t, runCLI(t, tc.stdin, tc.args...), tc.want...)
		})
	}
}

// TestRunExamplesMovingAverageKVDir checks that --kv-dir keeps a module's kv state between
// invocations, so moving-average's average accumulates, and that without it every run starts
// from nothing.
//
// The module runs with --interpreter: it is a 3.2 MB Go module that wazero's compiler takes
// seconds to compile on every run (`wasmfleet run` keeps no compile cache; under -race,
// several times that), while the interpreter starts at once; kv is the same for both engines.
// The interpreter under -race needs about 300 ms for the Go runtime's start, too close to the
// example's 500ms timeout when packages are tested in parallel, so the manifest is the
// example's own with only the timeout raised. `make demo` and modules/examples_test.go run
// it with its own manifest.
func TestRunExamplesMovingAverageKVDir(t *testing.T) {
	orig, w := example(t, "moving-average")
	raw, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(raw, []byte("timeout: 500ms")) != 1 {
		t.Fatalf("%s no longer says timeout: 500ms once; update this test", orig)
	}
	m := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(m, bytes.Replace(raw, []byte("timeout: 500ms"), []byte("timeout: 10s"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	kvDir := t.TempDir()
	run := func(event string, extra ...string) runOutcome {
		args := append([]string{"--interpreter", "--manifest", m, "--topic", "sensors/pi-7/temperature", "--device", "pi-7", "--event", event}, extra...)
		return runCLI(t, "", append(args, w)...)
	}

	wantPublished(t, run(`{"value": 20}`, "--kv-dir", kvDir), `{"topic":"averages/pi-7","payload":{"device":"pi-7","average":20,"count":1}}`)
	wantPublished(t, run(`{"value": 22}`, "--kv-dir", kvDir), `{"topic":"averages/pi-7","payload":{"device":"pi-7","average":21,"count":2}}`)
	// A failed event ends with exit 2 and leaves the stored readings as they were.
	wantContained(t, run(`{"value": "warm"}`, "--kv-dir", kvDir), "error: handler-failed: ")
	wantPublished(t, run(`{"temperature": 24}`, "--kv-dir", kvDir), `{"topic":"averages/pi-7","payload":{"device":"pi-7","average":22,"count":3}}`)

	// Without --kv-dir each run gets a fresh temporary store.
	for range 2 {
		wantPublished(t, run(`{"value": 5}`), `{"topic":"averages/pi-7","payload":{"device":"pi-7","average":5,"count":1}}`)
	}
}

// TestRunExamplesErrorContract runs modules that the sandbox must stop and checks that each
// ends with exit 2, nothing on stdout and exactly one line `error: <kind>: <detail>` on
// stderr, the kind being the one agent/sandbox/errors.go names.
func TestRunExamplesErrorContract(t *testing.T) {
	thrM, thrW := example(t, "threshold-alert")
	ctofM, ctofW := example(t, "c-to-f")
	echoM, echoW := example(t, "echo")
	_, wellW := hostile(t, "well-behaved")
	_, kvW := hostile(t, "kv-over-quota")
	noKV := filepath.Join(t.TempDir(), "no-kv.yaml")
	if err := os.WriteFile(noKV, []byte("name: no-kv\nversion: 1.0.0\nabi: handler/v1\nlimits: { memory: 1MiB, timeout: 50ms }\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	type tcase struct {
		name   string
		args   []string
		prefix string
	}
	cases := []tcase{
		// Example handlers that refuse their input.
		{"threshold-alert/malformed-json", []string{"--manifest", thrM, "--event", `{"value": 31.2`, thrW}, "error: handler-failed: "},
		{"c-to-f/no-celsius", []string{"--manifest", ctofM, "--event", `{"kelvin": 300}`, ctofW}, "error: handler-failed: "},
		// Without --manifest nothing is granted, not even the topic the module publishes to.
		{"echo/no-manifest-no-publish", []string{"--event", "hi", echoW}, "error: forbidden-topic: "},
		{"well-behaved/no-manifest-no-publish", []string{"--event", `{"x":1}`, wellW}, "error: forbidden-topic: "},
		{"echo/not-a-wasm-file", []string{"--manifest", echoM, "--event", "hi", echoM}, "error: invalid-module: "},
		{"kv-over-quota/kv-not-granted", []string{"--manifest", noKV, "--event", "x", kvW}, "error: capability-denied: "},
	}
	for _, h := range []struct{ name, prefix string }{
		{"infinite-loop", "error: timeout: "},
		{"exp-recursion", "error: timeout: "},
		{"start-never-returns", "error: timeout: "},
		{"start-recursion", "error: timeout: "},
		{"deep-recursion", "error: stack-overflow: "},
		{"memory-grow-bomb", "error: memory-limit: "},
		{"huge-initial-memory", "error: memory-limit: "},
		{"trap", "error: trap: "},
		{"forbidden-topic", "error: forbidden-topic: "},
		{"publish-flood", "error: publish-limit: "},
		{"kv-over-quota", "error: kv-quota: "},
		{"oob-pointers", "error: bad-pointer: "},
		{"oob-length", "error: bad-pointer: "},
		{"oob-kv", "error: bad-pointer: "},
		{"unknown-import", "error: unknown-import: "},
	} {
		m, w := hostile(t, h.name)
		cases = append(cases, tcase{"hostile/" + h.name, []string{"--manifest", m, "--event", `{"x":1}`, w}, h.prefix})
	}
	// The deadline holds on the interpreter (32-bit ARM) as well.
	m, w := hostile(t, "infinite-loop")
	cases = append(cases, tcase{"hostile/infinite-loop-interpreter", []string{"--interpreter", "--manifest", m, "--event", "x", w}, "error: timeout: "})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantContained(t, runCLI(t, "", tc.args...), tc.prefix)
		})
	}
}

// TestRunExamplesUsageErrors checks that a wrong command line is exit 1 with an `error:` line
// naming the problem, and that nothing runs.
func TestRunExamplesUsageErrors(t *testing.T) {
	echoM, echoW := example(t, "echo")
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		args []string
		want string // the last stderr line starts with this
		// onlyLine: the error line is all of stderr (flag errors print the usage first).
		onlyLine bool
	}{
		{"no-module", []string{"--manifest", echoM, "--event", "x"}, "error: run needs exactly one MODULE.wasm", true},
		{"two-modules", []string{"--manifest", echoM, "--event", "x", echoW, echoW}, "error: run needs exactly one MODULE.wasm", true},
		{"module-not-found", []string{"--manifest", echoM, "--event", "x", missing + ".wasm"}, "error: read module: ", true},
		{"event-and-event-file", []string{"--manifest", echoM, "--event", "x", "--event-file", echoM, echoW}, "error: give --event or --event-file, not both", true},
		{"event-file-not-found", []string{"--manifest", echoM, "--event-file", missing + ".json", echoW}, "error: read --event-file: ", true},
		{"manifest-not-found", []string{"--manifest", missing + ".yaml", "--event", "x", echoW}, "error: read --manifest: ", true},
		{"manifest-not-a-manifest", []string{"--manifest", echoW, "--event", "x", echoW}, "error: " + echoW + ": ", true},
		{"bad-device-id", []string{"--manifest", echoM, "--device", "pi/7", "--event", "x", echoW}, "error: --device: ", true},
		{"unknown-flag", []string{"--manifest", echoM, "--bogus", "--event", "x", echoW}, "error: flag provided but not defined: -bogus", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := runCLI(t, "", tc.args...)
			lines := strings.Split(strings.TrimSuffix(o.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if o.code != 1 || o.stdout != "" || !strings.HasPrefix(last, tc.want) || (tc.onlyLine && len(lines) != 1) {
				t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant exit 1, empty stdout, stderr ending in a line starting %q", o.code, o.stdout, o.stderr, tc.want)
			}
		})
	}
}
