package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/signing"
)

// cosignPath finds cosign on PATH or where `make deps-interop` installs it.
func cosignPath() string {
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	gopath, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestCosignInterop checks, with a real cosign, that releases cross between the two tools:
// a cosign key signs a wasmfleet release, a cosign attestation is a wasmfleet release, and a
// wasmfleet release verifies with cosign.
//
// cosign v3 writes a sigstore bundle by default; the plain DSSE envelope comes from
// --new-bundle-format=false with --output-signature (and, offline, --use-signing-config=false
// --tlog-upload=false). verify-blob-attestation takes it with --signature and, since we use
// no transparency log, --insecure-ignore-tlog.
func TestCosignInterop(t *testing.T) {
	cosign := cosignPath()
	if cosign == "" {
		t.Skip("cosign is not installed: run `make deps-interop` (go install github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3) to run this interop test")
	}
	dir := setup(t)
	// cosign reads COSIGN_PASSWORD; so does wasmfleet, when WASMFLEET_KEY_PASSWORD is unset.
	os.Unsetenv(passwordEnv)
	t.Setenv(cosignPasswordEnv, "cosign pass")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=cosign pass", "TUF_ROOT="+filepath.Join(dir, ".sigstore"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("generate-key-pair")
	// A trust file whose release role is the cosign key and rel1 (threshold 1).
	t.Setenv(passwordEnv, "correct horse") // root.key was made by setup with this password
	must(t, dir, "trust", "init", "--root-key", "root.key", "--release-key", "cosign.pub", "--release-key", "rel1.pub",
		"--rollout-key", "rollout.pub", "-o", "croot.json")
	os.Unsetenv(passwordEnv)

	t.Run("cosign key signs a wasmfleet release", func(t *testing.T) {
		must(t, dir, "sign", "--key", "cosign.key", "--manifest", "m.yaml", "m.wasm", "-o", "by-cosign-key.json")
		out := must(t, dir, "verify", "--trust", "croot.json", "by-cosign-key.json", "m.wasm")
		if !strings.HasPrefix(out, "ok: threshold-alert 1.2.0") {
			t.Fatal(out)
		}
	})

	t.Run("cosign attest-blob makes a wasmfleet release", func(t *testing.T) {
		must(t, dir, "sign", "--predicate", "--manifest", "m.yaml", "m.wasm", "-o", "predicate.json")
		run("attest-blob", "--key", "cosign.key", "--type", signing.ReleasePredicateType, "--predicate", "predicate.json",
			"--new-bundle-format=false", "--use-signing-config=false", "--tlog-upload=false",
			"--output-signature", "attestation.json", "--yes", "m.wasm")
		out := must(t, dir, "verify", "--trust", "croot.json", "attestation.json", "m.wasm")
		if !strings.HasPrefix(out, "ok: threshold-alert 1.2.0") {
			t.Fatal(out)
		}
		// cosign v3's default output, a sigstore bundle, verifies too.
		run("attest-blob", "--key", "cosign.key", "--type", signing.ReleasePredicateType, "--predicate", "predicate.json",
			"--use-signing-config=false", "--tlog-upload=false", "--bundle", "attestation.bundle.json", "--yes", "m.wasm")
		must(t, dir, "verify", "--trust", "croot.json", "attestation.bundle.json", "m.wasm")
		// And it is refused with another module, as any release would be.
		os.WriteFile(filepath.Join(dir, "other.wasm"), []byte("\x00asm\x01\x00\x00\x00other"), 0o644)
		refusedWith(t, dir, "digest:", "verify", "--trust", "croot.json", "attestation.json", "other.wasm")
		// Under the original trust file the cosign key holds no role.
		refusedWith(t, dir, "bad-signature:", "verify", "--trust", "root.json", "attestation.json", "m.wasm")
	})

	t.Run("cosign verifies a wasmfleet release", func(t *testing.T) {
		t.Setenv(passwordEnv, "correct horse")
		must(t, dir, "sign", "--key", "rel1.key", "--key", "rel3.key", "--manifest", "m.yaml", "m.wasm", "-o", "by-wasmfleet.json")
		for _, pub := range []string{"rel1.pub", "rel3.pub"} { // ECDSA and ed25519
			out := run("verify-blob-attestation", "--key", pub, "--signature", "by-wasmfleet.json",
				"--type", signing.ReleasePredicateType, "--insecure-ignore-tlog=true", "m.wasm")
			if !strings.Contains(out, "Verified OK") {
				t.Fatalf("cosign with %s: %s", pub, out)
			}
		}
		// cosign refuses it for a key that did not sign it.
		cmd := exec.Command(cosign, "verify-blob-attestation", "--key", "rel2.pub", "--signature", "by-wasmfleet.json",
			"--type", signing.ReleasePredicateType, "--insecure-ignore-tlog=true", "m.wasm")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("cosign accepted a key that did not sign: %s", out)
		}
	})
}
