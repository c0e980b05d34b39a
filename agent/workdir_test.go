package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCleanWorkDir: what killed agents left in work/ and, from before work/ existed, at the
// top of the data directory, is removed; nothing else is.
func TestCleanWorkDir(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"work/wasmfleet-compiled-1/a/b", "wasmfleet-compiled-2/c", "cache/entry", "store/state.json"} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	work, err := cleanWorkDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if work != filepath.Join(dir, "work") {
		t.Fatalf("work dir %s", work)
	}
	_, _, entries := diskUsage(t, dir)
	if got := filepath.Join(entries...); got != filepath.Join("cache", "store", "work") {
		t.Fatalf("data directory holds %v", entries)
	}
	if files, _, _ := diskUsage(t, work); files != 0 {
		t.Fatalf("work/ still holds %d files", files)
	}
}
