package devenv_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
)

// TestHandlerDevelopmentFlow walks the developer's path of issue 7 against a running dev
// environment, for a C and a Go handler: wasmfleet new, build, run (one event, locally),
// sign with the dev release key, publish and rollout start (both to the dev environment, by
// default: no S3 or MQTT flags), then an event on the handler's input topic reaches every
// agent and each publishes the handler's output. It needs the C toolchain that make deps
// installs (clang, lld, wasi-libc); Go is the one running the test.
func TestHandlerDevelopmentFlow(t *testing.T) {
	clearFleetEnv(t)
	base := t.TempDir()
	e, logs := start(t, filepath.Join(base, devenv.DefaultDir), "")
	info := e.Info()
	obs := observe(t, info)
	t.Chdir(base)

	for _, lang := range []string{"c", "go"} {
		name := "my-" + lang
		t.Run(lang, func(t *testing.T) {
			dir := filepath.Join(base, name)
			mustCLI(t, "new", "--dir", dir, lang, name)
			mustCLI(t, "build", dir)
			wasm := filepath.Join(dir, name+".wasm")
			manifest := filepath.Join(dir, "manifest.yaml")
			out, _ := mustCLI(t, "run", "--manifest", manifest, "--device", "pi-7", "--event-file", filepath.Join(dir, "event.json"), wasm)
			if !strings.Contains(out, `"topic":"`+name+`/pi-7/out"`) {
				t.Fatalf("run: %s", out)
			}
			rel := filepath.Join(dir, "release.dsse.json")
			mustCLI(t, "sign", "--key", info.ReleaseKey, "--password-file", info.PasswordFile, "--manifest", manifest, wasm, "-o", rel)
			out, errs := mustCLI(t, "publish", "--quiet", rel, wasm)
			if !strings.Contains(out, "published "+name+" 0.1.0") || !strings.Contains(errs, "using the dev environment") {
				t.Fatalf("publish: %s%s", out, errs)
			}
			out, _ = mustCLI(t, "rollout", "start", "--release", name+"@0.1.0", "--group", info.Group, "--new",
				"--waves", "50,100", "--soak", "500ms", "--min-devices", "1")
			id := strings.TrimSuffix(strings.Fields(strings.TrimPrefix(out, "started rollout "))[0], ":")
			out, _ = mustCLI(t, "rollout", "status", id, "--watch", "--interval", "200ms", "--live=false")
			if !strings.Contains(out, "completed") {
				t.Fatalf("rollout status:\n%s\nlog:\n%s", out, logs)
			}
			for _, d := range info.Devices {
				in, outTopic := fmt.Sprintf("%s/%s/in", name, d), fmt.Sprintf("%s/%s/out", name, d)
				// The module is active once the device says so; events sent before may find
				// it still starting, so send until the output comes.
				waitFor(t, 60*time.Second, func() bool {
					if obs.count(outTopic) > 0 {
						return true
					}
					obs.c.Publish(in, 1, false, `{"value": 21.5}`)
					time.Sleep(200 * time.Millisecond)
					return obs.count(outTopic) > 0
				}, func() string { return "output on " + outTopic })
				if b := obs.last(outTopic); !bytes.Contains(b, []byte(`"greeting":"hello"`)) || !bytes.Contains(b, []byte(`"device":"`+d+`"`)) {
					t.Errorf("%s: %s", outTopic, b)
				}
			}
		})
	}
}
