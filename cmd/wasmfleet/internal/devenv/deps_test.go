package devenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// devOnly are import path prefixes that belong to `wasmfleet dev` alone: the embedded
// broker and S3 store, and what they bring. The agent binary must never link them
// (tailscale's tstest/deptest, with go list).
var devOnly = []string{
	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv",
	"github.com/mochi-mqtt/",
	"github.com/johannesboyne/gofakes3",
	"go.etcd.io/bbolt",
	"gopkg.in/mgo.v2",
}

func goListDeps(t *testing.T, root string, pkgs ...string) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", pkgs, err, msg)
	}
	return strings.Fields(string(out))
}

func devOnlyIn(pkgs []string) []string {
	var out []string
	for _, p := range pkgs {
		for _, b := range devOnly {
			if strings.HasPrefix(p, b) {
				out = append(out, p)
			}
		}
	}
	return out
}

func TestAgentDoesNotLinkTheDevEnvironment(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	if bad := devOnlyIn(goListDeps(t, root, "./cmd/wasmfleet-agent", "./agent/...")); len(bad) > 0 {
		t.Errorf("the agent links %v, which only wasmfleet dev may", bad)
	}
	// The list must be able to catch something: the fleet CLI links all of it.
	cliDeps := goListDeps(t, root, "./cmd/wasmfleet")
	for _, b := range devOnly {
		if len(devOnlyIn(filterPrefix(cliDeps, b))) == 0 {
			t.Errorf("the CLI links nothing under %s: is the list misspelled?", b)
		}
	}
}

func filterPrefix(pkgs []string, prefix string) []string {
	var out []string
	for _, p := range pkgs {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// TestDemoBuildLeavesOutKMS: make demo builds the CLI with -tags nokms, which must leave out
// every cloud SDK (they are most of what a cold build compiles) and keep the dev environment.
func TestDemoBuildLeavesOutKMS(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	deps := goListDeps(t, root, "-tags", "nokms", "./cmd/wasmfleet")
	for _, p := range deps {
		for _, b := range []string{"github.com/aws/", "cloud.google.com/", "github.com/Azure/", "github.com/hashicorp/vault/",
			"github.com/sigstore/sigstore/pkg/signature/kms/aws", "github.com/sigstore/sigstore/pkg/signature/kms/azure",
			"github.com/sigstore/sigstore/pkg/signature/kms/gcp", "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"} {
			if strings.HasPrefix(p, b) {
				t.Errorf("wasmfleet built with -tags nokms links %s", p)
			}
		}
	}
	if len(filterPrefix(deps, "github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv")) == 0 {
		t.Error("wasmfleet built with -tags nokms has no dev environment")
	}
}
