package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
)

// runDev is runMain with buffers that the environment's goroutines may log to at once.
func runDev(args ...string) (int, string, string) {
	var out, errb syncBuffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

var dashboardLine = regexp.MustCompile(`dashboard  (http://127\.0\.0\.1:\d+/)  \(operator token ([0-9a-f]{32})\)`)

// TestDevCommand runs `wasmfleet dev` until the test cancels it (Ctrl-C): it prints where
// everything is, serves the fleet dashboard (fleet/dashboard, not the plain status page)
// with its agent in it, writes the environment file, refuses a second run in the same
// directory, and stops cleanly.
func TestDevCommand(t *testing.T) {
	for _, n := range devEnvNames {
		t.Setenv(n, "")
	}
	dir := filepath.Join(t.TempDir(), "dev")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"dev", "--dir", dir, "--agents", "1", "--examples", "", "--events", "0"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	var m []string
	deadline := time.Now().Add(60 * time.Second)
	for m = dashboardLine.FindStringSubmatch(stdout.String()); m == nil; m = dashboardLine.FindStringSubmatch(stdout.String()) {
		select {
		case code := <-done:
			t.Fatalf("wasmfleet dev ended with %d\n%s%s", code, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard line after 60s:\n%s%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	url, token := m[1], m[2]
	for _, want := range []string{"1 agents in group dev", "broker     tcp://127.0.0.1:", "mosquitto_sub -h 127.0.0.1",
		"wasmfleet-agent --config " + filepath.Join(dir, "agent.yaml")} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the banner has no %q:\n%s", want, stdout.String())
		}
	}

	// The fleet dashboard answers, and lists the agent once it has reported.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var page string
	waitFor("the dashboard to list dev-1", func() bool {
		resp, err := http.Get(url + "devices")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page = string(b)
		return resp.StatusCode == 200 && strings.Contains(page, "dev-1")
	})
	if strings.Contains(page, "plain status page") {
		t.Error("the dev command serves the plain status page, not the dashboard")
	}

	ef, err := devenv.ReadEnvFile(filepath.Join(dir, devenv.EnvFileName))
	if err != nil {
		t.Fatal(err)
	}
	if ef.Dashboard != url || ef.DashboardToken != token || ef.Dir != dir {
		t.Errorf("env file: dashboard %q token %q dir %q", ef.Dashboard, ef.DashboardToken, ef.Dir)
	}

	code, _, errs := runDev("dev", "--dir", dir, "--agents", "0")
	if code != 2 || !strings.Contains(errs, "error: busy:") {
		t.Errorf("a second wasmfleet dev in the same directory: exit %d\n%s", code, errs)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(stdout.String(), "stopped.") {
			t.Errorf("after Ctrl-C: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wasmfleet dev did not stop within 30s of Ctrl-C")
	}
	if devenv.Running(dir) {
		t.Error("the directory is still locked after wasmfleet dev stopped")
	}
}

// TestDevFor: with --for, wasmfleet dev stops by itself: exit 0 when there was nothing to
// roll out, 2 when the examples were not rolled out in time; usage errors exit 1.
func TestDevFor(t *testing.T) {
	for _, n := range devEnvNames {
		t.Setenv(n, "")
	}
	dir := filepath.Join(t.TempDir(), "dev")
	code, out, errs := runDev("dev", "--dir", dir, "--agents", "0", "--examples", "", "--for", "500ms")
	if code != 0 || !strings.Contains(out, "running for 500ms") || !strings.Contains(out, "stopped.") {
		t.Errorf("dev --for 500ms: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "release.key")); err != nil {
		t.Errorf("no dev keys: %v", err)
	}
	// With an example to roll out (three waves, each soaking 5s), one second is too short:
	// exit 2, so that CI notices.
	code, out, errs = runDev("dev", "--dir", dir, "--agents", "0", "--examples", filepath.Join("..", "..", "..", "..", "modules", "examples"),
		"--events", "0", "--for", "1s")
	if code != 2 || !strings.Contains(errs, "not all rolled out after --for 1s") {
		t.Errorf("dev --for 1s with examples: exit %d\n%s%s", code, out, errs)
	}
	for _, args := range [][]string{{"--agents", "-1"}, {"--waves", "50,20"}, {"--soak", "0s"}, {"extra"}, {"--log-level", "loud"}} {
		if code, _, errs := runDev(append([]string{"dev", "--dir", dir}, args...)...); code != 1 {
			t.Errorf("dev %v: exit %d, want 1\n%s", args, code, errs)
		}
	}
}
