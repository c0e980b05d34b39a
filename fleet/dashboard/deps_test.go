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
// (a test dependency) (tailscale's tstest/deptest, with go list).
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
	banned("./cmd/wasmfleet-agent", "github.com/wasmfleet/wasmfleet/fleet/dashboard", "html/template", "github.com/chromedp/")
	banned("./cmd/wasmfleet", "github.com/chromedp/")
	if !slices.Contains(list("./cmd/wasmfleet"), "github.com/wasmfleet/wasmfleet/fleet/dashboard") {
		t.Error("cmd/wasmfleet does not link the dashboard (wasmfleet serve serves it)")
	}
}
