package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wf runs the CLI in dir and returns its exit code, stdout and stderr.
func wf(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func must(t *testing.T, dir string, args ...string) string {
	t.Helper()
	code, out, errs := wf(t, dir, args...)
	if code != 0 {
		t.Fatalf("wasmfleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func refusedWith(t *testing.T, dir, prefix string, args ...string) {
	t.Helper()
	code, out, errs := wf(t, dir, args...)
	if code != 2 || !strings.HasPrefix(errs, "error: "+prefix) {
		t.Fatalf("wasmfleet %s: exit %d, stderr %q, stdout %q; want exit 2 and %q", strings.Join(args, " "), code, errs, out, "error: "+prefix)
	}
}

const testManifest = "name: threshold-alert\nversion: 1.2.0\nabi: handler/v1\nlimits: { memory: 4MiB }\n"

// setup makes keys, a trust file (release 2 of 3), a manifest and a module in a temp dir.
func setup(t *testing.T) string {
	t.Helper()
	t.Setenv(passwordEnv, "correct horse")
	dir := t.TempDir()
	for _, k := range []string{"root", "rel1", "rel2", "rollout", "stranger"} {
		must(t, dir, "keygen", k)
	}
	must(t, dir, "keygen", "--algo", "ed25519", "rel3")
	must(t, dir, "trust", "init", "--root-key", "root.key",
		"--release-key", "rel1.pub", "--release-key", "rel2.pub", "--release-key", "rel3.pub", "--release-threshold", "2",
		"--rollout-key", "rollout.pub", "-o", "root.json")
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(testManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{7}, 3000)...)
	if err := os.WriteFile(filepath.Join(dir, "m.wasm"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSignVerify(t *testing.T) {
	dir := setup(t)
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel3.key", "--manifest", "m.yaml", "m.wasm", "-o", "rel.json")
	out := must(t, dir, "verify", "--trust", "root.json", "rel.json", "m.wasm")
	if !strings.HasPrefix(out, "ok: threshold-alert 1.2.0 sha256:") || !strings.Contains(out, "signed by 2 of 3 release keys") || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify printed %q", out)
	}

	// Under threshold, then countersigned offline.
	must(t, dir, "sign", "--key", "rel2.key", "--manifest", "m.yaml", "m.wasm", "-o", "one.json")
	refusedWith(t, dir, "threshold: release needs 2 of the 3 release keys", "verify", "--trust", "root.json", "one.json", "m.wasm")
	must(t, dir, "sign", "--key", "rel1.key", "--add-signature", "one.json", "m.wasm")
	must(t, dir, "verify", "--trust", "root.json", "one.json", "m.wasm")

	// Keys outside the role, a tampered module, a module that is not the release's.
	must(t, dir, "sign", "--key", "stranger.key", "--key", "rollout.key", "--manifest", "m.yaml", "m.wasm", "-o", "bad.json")
	refusedWith(t, dir, "unknown-key:", "verify", "--trust", "root.json", "bad.json", "m.wasm")
	os.WriteFile(filepath.Join(dir, "other.wasm"), bytes.Repeat([]byte{8}, 3008), 0o644)
	refusedWith(t, dir, "digest:", "verify", "--trust", "root.json", "rel.json", "other.wasm")
	refusedWith(t, dir, "digest:", "sign", "--key", "rel2.key", "--add-signature", "rel.json", "other.wasm")
	os.WriteFile(filepath.Join(dir, "long.wasm"), bytes.Repeat([]byte{8}, 5000), 0o644)
	refusedWith(t, dir, "too-large:", "verify", "--trust", "root.json", "rel.json", "long.wasm")
	os.WriteFile(filepath.Join(dir, "junk.json"), []byte("{\"payloadType\":"), 0o644)
	refusedWith(t, dir, "malformed:", "verify", "--trust", "root.json", "junk.json", "m.wasm")
	refusedWith(t, dir, "expired:", "verify", "--at", "2100-01-01T00:00:00Z", "--trust", "root.json", "rel.json", "m.wasm")

	// Wrong password, and no password at all.
	t.Setenv(passwordEnv, "wrong")
	refusedWith(t, dir, "key:", "sign", "--key", "rel1.key", "--manifest", "m.yaml", "m.wasm", "-o", "x.json")
	os.Unsetenv(passwordEnv)
	t.Setenv(cosignPasswordEnv, "correct horse")
	os.Unsetenv(cosignPasswordEnv) // t.Setenv restores it; unset for this check
	refusedWith(t, dir, "password: no password", "sign", "--key", "rel1.key", "--manifest", "m.yaml", "m.wasm", "-o", "x.json")
	os.WriteFile(filepath.Join(dir, "pw"), []byte("correct horse\n"), 0o600)
	must(t, dir, "sign", "--password-file", "pw", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m.yaml", "m.wasm", "-o", "x.json")
}

func TestPredicateForCosign(t *testing.T) {
	dir := setup(t)
	out := must(t, dir, "sign", "--predicate", "--manifest", "m.yaml", "m.wasm")
	if !strings.HasPrefix(out, `{"manifest":{"name":"threshold-alert","version":"1.2.0","abi":"handler/v1","capabilities":{},"limits":{"memory":4194304}},"size":3008,"abi":"handler/v1"}`) {
		t.Fatalf("predicate = %s", out)
	}
}

func TestTrustRotateCLI(t *testing.T) {
	dir := setup(t)
	must(t, dir, "keygen", "root2")
	// Only the new key signs: refused, since devices holding version 1 need its root key.
	refusedWith(t, dir, "rotation:", "trust", "rotate", "--trust", "root.json", "--sign-key", "root2.key", "--root-pub", "root2.pub", "-o", "v2.json")
	// Written with --partial, countersigned by the old root key: now acceptable.
	must(t, dir, "trust", "rotate", "--partial", "--trust", "root.json", "--sign-key", "root2.key", "--root-pub", "root2.pub", "-o", "v2.json")
	out := must(t, dir, "trust", "sign", "--key", "root.key", "--trust", "root.json", "v2.json")
	if !strings.Contains(out, "acceptable as the rotation from version 1") {
		t.Fatalf("trust sign: %s", out)
	}
	out = must(t, dir, "trust", "show", "--trust", "root.json", "v2.json")
	if !strings.Contains(out, "trust file version 2") || !strings.Contains(out, "release  2 of 3") {
		t.Fatalf("trust show: %s", out)
	}
	// Releases still verify under version 2 (same release keys).
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m.yaml", "m.wasm", "-o", "rel.json")
	must(t, dir, "verify", "--trust", "v2.json", "rel.json", "m.wasm")
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"keygen"},
		{"keygen", "--algo", "rsa", "k"},
		{"sign", "m.wasm"},
		{"sign", "--manifest", "m.yaml", "m.wasm"},
		{"verify", "rel.json", "m.wasm"},
		{"verify", "--trust", "root.json", "rel.json"},
		{"trust"},
		{"trust", "frobnicate"},
		{"trust", "init", "--root-key", "r.key"},
		{"trust", "rotate", "--trust", "root.json"},
	} {
		if code, _, errs := wf(t, dir, args...); code != 1 || !strings.HasPrefix(errs, "error: ") {
			t.Errorf("wasmfleet %s: exit %d (%q), want 1", strings.Join(args, " "), code, errs)
		}
	}
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	t.Setenv(passwordEnv, "")
	dir := t.TempDir()
	must(t, dir, "keygen", "k")
	refusedWith(t, dir, "exists:", "keygen", "k")
	must(t, dir, "keygen", "--force", "k")
	if fi, err := os.Stat(filepath.Join(dir, "k.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("k.key mode: %v %v", fi.Mode(), err)
	}
}

func TestDesiredCLI(t *testing.T) {
	dir := setup(t)
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m.yaml", "m.wasm", "-o", "rel.json")
	out := must(t, dir, "verify", "--trust", "root.json", "rel.json", "m.wasm")
	sha := strings.Fields(strings.SplitN(out, "sha256:", 2)[1])[0]
	doc := `{"target":{"group":"lab"},"sequence":5,"expires":"2099-01-01T00:00:00Z","modules":[
	  {"release":{"name":"threshold-alert","version":"1.2.0","sha256":"` + sha + `","size":3008},"rollout":"r-1","wave_percent":100}]}`
	os.WriteFile(filepath.Join(dir, "d.json"), []byte(doc), 0o644)
	must(t, dir, "sign", "--key", "rollout.key", "--desired", "d.json", "-o", "d.dsse.json")
	out = must(t, dir, "verify", "--trust", "root.json", "--desired", "d.dsse.json", "--group", "lab", "--as", "pi-1")
	if !strings.Contains(out, "sequence 5") || !strings.Contains(out, "pi-1 runs 1.2.0") {
		t.Fatalf("verify --desired: %s", out)
	}
	refusedWith(t, dir, "replay:", "verify", "--trust", "root.json", "--desired", "d.dsse.json", "--group", "lab", "--last-seq", "5")
	refusedWith(t, dir, "wrong-target:", "verify", "--trust", "root.json", "--desired", "d.dsse.json", "--group", "barn")
	must(t, dir, "sign", "--key", "rel1.key", "--desired", "d.json", "-o", "bad.dsse.json")
	refusedWith(t, dir, "unknown-key:", "verify", "--trust", "root.json", "--desired", "bad.dsse.json", "--group", "lab")
	os.WriteFile(filepath.Join(dir, "inv.json"), []byte(strings.Replace(doc, `"wave_percent":100`, `"wave_percent":101`, 1)), 0o644)
	refusedWith(t, dir, "invalid:", "sign", "--key", "rollout.key", "--desired", "inv.json", "-o", "x.json")
}
