package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMakesPrivateLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir)
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "releases")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	st := s.State()
	if st.Version != StateVersion || len(st.Modules) != 0 || len(st.Applied) != 0 || st.TrustVersion != 0 {
		t.Errorf("a new store has state %+v, want an empty one", st)
	}
}

func TestBlobRoundTrip(t *testing.T) {
	s := open(t, t.TempDir())
	data := wasm(1000, 1)
	d := digest(data)
	if s.HasBlob(d) {
		t.Fatal("HasBlob before the download")
	}
	if _, err := s.Blob(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Blob before the download: %v, want ErrNotFound", err)
	}
	p, have, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	if have != 0 || p != filepath.Join(s.Dir(), "blobs", "sha256", d+".unverified") {
		t.Fatalf("Partial = %s, %d", p, have)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("download has mode %v, want 0600", fi.Mode().Perm())
	}
	appendFile(t, p, data)
	if s.HasBlob(d) {
		t.Fatal("HasBlob before CommitBlob: an unverified download must not count")
	}
	if err := s.CommitBlob(d); err != nil {
		t.Fatal(err)
	}
	if !s.HasBlob(d) {
		t.Fatal("HasBlob after CommitBlob")
	}
	got, err := s.Blob(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Blob = %d bytes, %v", len(got), err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the download is still there after CommitBlob: %v", err)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "blobs", "sha256", d))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("blob: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
}

// A download cut off halfway (the agent killed, the link lost) resumes where it stopped.
func TestPartialResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	data := wasm(4096, 2)
	d := digest(data)

	s := open(t, dir)
	p, _, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, data[:1500])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	p, have, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	if have != 1500 {
		t.Fatalf("after a restart the download has %d bytes, want 1500", have)
	}
	appendFile(t, p, data[have:])
	if err := s.CommitBlob(d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Blob(d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Blob after a resumed download: %v", err)
	}
}

func TestCommitBlobMismatch(t *testing.T) {
	s := open(t, t.TempDir())
	data := wasm(512, 3)
	d := digest(data)
	cases := map[string][]byte{
		"other bytes": wasm(512, 4),
		"short":       data[:511],
		"long":        append(append([]byte(nil), data...), 0),
		"empty":       nil,
	}
	for name, got := range cases {
		t.Run(name, func(t *testing.T) {
			p, _, err := s.Partial(d)
			if err != nil {
				t.Fatal(err)
			}
			appendFile(t, p, got)
			err = s.CommitBlob(d)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("CommitBlob = %v, want ErrDigestMismatch", err)
			}
			if !strings.Contains(err.Error(), digest(got)) {
				t.Errorf("error %q does not say what the download hashed to", err)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the bad download was not deleted: %v", err)
			}
			if s.HasBlob(d) {
				t.Error("HasBlob after a mismatch")
			}
		})
	}
}

func TestCommitBlobWithoutDownload(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CommitBlob(digest([]byte("x"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CommitBlob without a download = %v, want ErrNotFound", err)
	}
}

func TestDropPartial(t *testing.T) {
	s := open(t, t.TempDir())
	d := digest(wasm(10, 5))
	p, _, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, []byte("abc"))
	if err := s.DropPartial(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("download still there: %v", err)
	}
	if err := s.DropPartial(d); err != nil {
		t.Fatalf("dropping no download: %v", err)
	}
	if _, have, _ := s.Partial(d); have != 0 {
		t.Fatalf("a dropped download starts again at %d bytes", have)
	}
}

// A blob damaged on disk (bit rot, a bad SD card, someone's hand) is moved aside and
// reported missing, so the agent fetches it again instead of running other code.
func TestBlobDamaged(t *testing.T) {
	cases := map[string]func(t *testing.T, p string){
		"flipped byte": func(t *testing.T, p string) {
			b := readFile(t, p)
			b[100] ^= 1
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, p string) {
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
		},
		"symlink": func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "other")
			if err := os.WriteFile(other, readFile(t, p), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, p); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			s := open(t, t.TempDir())
			data := wasm(300, 6)
			d := download(t, s, data)
			p := filepath.Join(s.Dir(), "blobs", "sha256", d)
			damage(t, p)

			_, err := s.Blob(d)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) {
				t.Fatalf("Blob of a damaged blob = %v, want ErrCorrupt and ErrNotFound", err)
			}
			if s.HasBlob(d) {
				t.Error("HasBlob after the blob was found damaged")
			}
			if aside := glob(t, filepath.Dir(p), d+".corrupt-*"); len(aside) != 1 || !strings.Contains(err.Error(), aside[0]) {
				t.Errorf("moved aside: %v; error %q should name it", aside, err)
			}
			// Fetched again, it is good.
			download(t, s, data)
			if got, err := s.Blob(d); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Blob after fetching again: %v", err)
			}
		})
	}
}

// badDigests are digests that must never become part of a path.
var badDigests = []string{
	"",
	"../../etc/passwd",
	"..",
	"/etc/passwd",
	strings.Repeat("a", 63),
	strings.Repeat("a", 65),
	strings.Repeat("A", 64),
	strings.Repeat("g", 64),
	strings.Repeat("a", 62) + "/.",
	"../" + strings.Repeat("a", 61),
	strings.Repeat("a", 64) + ".unverified",
	strings.Repeat("a", 64) + "\x00",
}

func TestBadDigestsTouchNothing(t *testing.T) {
	root := t.TempDir()
	s := open(t, filepath.Join(root, "data"))
	for _, d := range badDigests {
		if s.HasBlob(d) {
			t.Errorf("HasBlob(%q) = true", d)
		}
		if _, err := s.Blob(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("Blob(%q) = %v, want ErrInvalid", d, err)
		}
		if _, _, err := s.Partial(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("Partial(%q) = %v, want ErrInvalid", d, err)
		}
		if err := s.CommitBlob(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("CommitBlob(%q) = %v, want ErrInvalid", d, err)
		}
		if err := s.DropPartial(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("DropPartial(%q) = %v, want ErrInvalid", d, err)
		}
		if _, err := s.GC(map[string]bool{d: true}); !errors.Is(err, ErrInvalid) {
			t.Errorf("GC(%q) = %v, want ErrInvalid", d, err)
		}
	}
	// Nothing was created next to the data directory, nor inside it.
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Errorf("the test root holds %d entries, want only the data directory", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("blobs/sha256 holds %d entries, want none", len(ents))
	}
}
