package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck runs `wasmfleet-agent --check` on a valid and on broken configurations: exit 0
// and the redacted configuration, or exit 1 with every problem and its path.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	trust := filepath.Join(dir, "root.json")
	if err := os.WriteFile(trust, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := `device_id: pi-1
groups: [kitchen]
mqtt:
  brokers: [tcp://127.0.0.1:1883]
  username: pi-1
  password: hunter2-secret
s3: {endpoint: "127.0.0.1:9000", bucket: wasmfleet, access_key: reader, secret_key: s3-secret-value, insecure: true}
trust_root: ` + trust + `
data_dir: ` + filepath.Join(dir, "data") + "\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args []string, env ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := doMain(context.Background(), args, env, &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := run([]string{"--config", write("good.yaml", good), "--check"})
	if code != 0 || !strings.Contains(out, ": ok") || !strings.Contains(out, "pi-1") {
		t.Fatalf("good config: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out+errs, "hunter2-secret") || strings.Contains(out+errs, "s3-secret-value") {
		t.Fatalf("--check printed a secret:\n%s", out)
	}

	// Flags and the environment override the file.
	code, out, errs = run([]string{"--config", write("good2.yaml", good), "--check", "--device-id", "pi-9"}, "WASMFLEET_GROUPS=hall")
	if code != 0 || !strings.Contains(out, "pi-9") || !strings.Contains(out, "hall") {
		t.Fatalf("overrides: exit %d\n%s%s", code, out, errs)
	}

	bad := strings.Replace(good, "tcp://127.0.0.1:1883", "ftp://x", 1) + "sudo: true\n"
	code, out, errs = run([]string{"--config", write("bad.yaml", bad), "--check"})
	if code != 1 || !strings.Contains(errs, "mqtt.brokers[0]") || !strings.Contains(errs, "sudo") {
		t.Fatalf("bad config: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if code, _, errs = run([]string{"--config", filepath.Join(dir, "missing.yaml"), "--check"}); code != 1 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("missing file: exit %d: %s", code, errs)
	}
	if code, _, _ = run([]string{"--no-such-flag"}); code != 1 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if code, out, _ = run([]string{"--version"}); code != 0 || !strings.HasPrefix(out, "wasmfleet-agent ") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
}
