package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// WAT compiles WebAssembly text with wabt's wat2wasm (installed by make deps), passing
// flags (such as --enable-tail-call) through. A missing wat2wasm fails the test.
func WAT(t testing.TB, src string, flags ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatal("wat2wasm not found: run make deps (Debian package wabt)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, flags...), in, "-o", out)
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
