package dashboard

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestDeps: the agent binary links no part of the dashboard, and no binary links chromedp
// or the test helpers (internal/testenv, signing/signingtest), which are test dependencies
// (tailscale's tstest/deptest, with go list).
func TestDeps(t *testing.T) {
	list := func(pkg string) []string {
		t.Helper()
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", "-f", "{{.ImportPath}}", pkg)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		out, err := cmd.Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("go list %s: %v\n%s", pkg, err, msg)
		}
		return strings.Fields(string(out))
	}
	banned := func(pkg string, prefixes ...string) {
		t.Helper()
		deps := list(pkg)
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s: only %v", pkg, deps)
		}
		for _, d := range deps {
			for _, p := range prefixes {
				if strings.HasPrefix(d, p) {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
	testOnly := []string{"github.com/chromedp/", "github.com/wasmfleet/wasmfleet/internal/testenv", "github.com/wasmfleet/wasmfleet/signing/signingtest"}
	banned("./cmd/wasmfleet-agent", append(testOnly, "github.com/wasmfleet/wasmfleet/fleet/dashboard", "html/template")...)
	banned("./cmd/wasmfleet", testOnly...)
	if !slices.Contains(list("./cmd/wasmfleet"), "github.com/wasmfleet/wasmfleet/fleet/dashboard") {
		t.Error("cmd/wasmfleet does not link the dashboard (wasmfleet serve serves it)")
	}
}
