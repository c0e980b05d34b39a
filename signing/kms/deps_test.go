package kms

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// banned are import path prefixes the agent must never link: the KMS providers and the
// cloud SDKs they bring (tailscale's tstest/deptest, done with go list).
var banned = []string{
	"github.com/wasmfleet/wasmfleet/signing/kms",
	"github.com/sigstore/sigstore/pkg/signature/kms",
	"github.com/aws/",
	"cloud.google.com/",
	"google.golang.org/api/",
	"google.golang.org/grpc",
	"github.com/Azure/",
	"github.com/AzureAD/",
	"github.com/hashicorp/vault/",
}

// agentSide are the packages (patterns) that end up in the agent binary, or that it uses
// to verify. Missing directories (work in progress) are skipped.
var agentSide = []string{"./signing", "./signing/keys", "./protocol/...", "./agent/...", "./cmd/wasmfleet-agent"}

func goList(t *testing.T, root string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"list", "-deps", "-e", "-f", "{{.ImportPath}}"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", args, err, msg)
	}
	return strings.Fields(string(out))
}

func isBanned(pkg string) bool {
	for _, b := range banned {
		if strings.HasPrefix(pkg, b) {
			return true
		}
	}
	return false
}

func TestAgentDoesNotLinkKMS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, p := range agentSide {
		dir := filepath.Join(root, strings.TrimSuffix(p, "/..."))
		if _, err := os.Stat(dir); err == nil {
			pats = append(pats, p)
		}
	}
	for _, pkg := range goList(t, root, pats...) {
		if isBanned(pkg) {
			t.Errorf("%v depends on %s; KMS providers and cloud SDKs belong in the fleet CLI only", pats, pkg)
		}
	}
	// The list must be able to catch something: this package itself links all of it.
	n := 0
	for _, pkg := range goList(t, root, "./signing/kms") {
		if isBanned(pkg) {
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d banned packages under signing/kms: the banned list is misspelled", n)
	}
}
