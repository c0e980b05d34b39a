package devenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysMadeOnceThenReused(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := loadKeys(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k.created || k.trust.Version() != 1 {
		t.Fatalf("first load: created %v, trust version %d", k.created, k.trust.Version())
	}
	before := map[string][]byte{}
	for _, f := range keyFiles() {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
		st, _ := os.Stat(filepath.Join(dir, f))
		if private := strings.HasSuffix(f, ".key") || f == passwordFile; private && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, st.Mode().Perm())
		}
	}
	if !strings.Contains(string(before["release.key"]), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Errorf("release.key is not in cosign's format:\n%s", before["release.key"])
	}
	k2, err := loadKeys(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.created {
		t.Error("second load made new keys")
	}
	for f, b := range before {
		if a, _ := os.ReadFile(filepath.Join(dir, f)); string(a) != string(b) {
			t.Errorf("%s changed", f)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".keys-*")); len(leftovers) > 0 {
		t.Errorf("temporary directories left: %v", leftovers)
	}
}

func TestKeysIncompleteOrWrong(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := loadKeys(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "rollout.pub")); err != nil {
		t.Fatal(err)
	}
	_, err := loadKeys(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "but not rollout.pub") || !strings.Contains(err.Error(), "remove the dev directory") {
		t.Errorf("incomplete keys: %v", err)
	}

	dir = filepath.Join(t.TempDir(), "keys")
	if _, err := loadKeys(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, passwordFile), []byte("not the password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(ctx, dir); err == nil || !strings.Contains(err.Error(), "release.key") {
		t.Errorf("wrong password: %v", err)
	}

	// A trust file that names other keys: the release key is not a release key of it.
	dir, other := filepath.Join(t.TempDir(), "keys"), filepath.Join(t.TempDir(), "keys")
	for _, d := range []string{dir, other} {
		if _, err := loadKeys(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(other, trustFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, trustFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(ctx, dir); err == nil || !strings.Contains(err.Error(), "not a release key") {
		t.Errorf("foreign trust file: %v", err)
	}
}
