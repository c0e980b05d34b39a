package store

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// lsStore lists the files under the store's blob and release directories.
func lsStore(t *testing.T, s *Store) []string {
	t.Helper()
	var names []string
	for _, d := range []string{"blobs/sha256", "releases"} {
		ents, err := os.ReadDir(filepath.Join(s.Dir(), d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			names = append(names, d+"/"+e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func TestGCKeepsWhatIsReferenced(t *testing.T) {
	s := open(t, t.TempDir())

	// active and previous: a module in its health window. stale: an old release nothing
	// refers to. pending: committed and stored but not yet activated (in keep).
	// downloading: a download in progress (in keep). abandoned: a download nobody wants.
	put := func(version string, seed byte) (string, []byte) {
		data := wasm(256, seed)
		r, env := release(t, "echo", version, data)
		if err := s.PutRelease(r, env); err != nil {
			t.Fatal(err)
		}
		return download(t, s, data), data
	}
	active, _ := put("1.2.0", 1)
	previous, _ := put("1.1.0", 2)
	stale, _ := put("1.0.0", 3)
	pending, _ := put("1.3.0", 4)
	downloading := digest(wasm(256, 5))
	abandoned := digest(wasm(256, 6))
	for _, d := range []string{downloading, abandoned} {
		p, _, err := s.Partial(d)
		if err != nil {
			t.Fatal(err)
		}
		appendFile(t, p, []byte("some bytes"))
	}
	// A blob found damaged is moved aside; GC removes it. Files GC does not know stay.
	if err := os.WriteFile(filepath.Join(s.Dir(), "blobs", "sha256", stale+".corrupt-20260101T000000Z"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "releases", "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	activeRef, prevRef := ref("echo", "1.2.0", 0), ref("echo", "1.1.0", 0)
	activeRef.SHA256, activeRef.Size = active, 256
	prevRef.SHA256, prevRef.Size = previous, 256
	if err := s.Update(func(st *State) error {
		st.Modules["echo"] = ModuleState{Active: activeRef, Previous: &prevRef, Since: t0, Status: StatusActive}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	before := lsStore(t, s)
	removed, err := s.GC(map[string]bool{pending: true, downloading: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"blobs/sha256/" + active,
		"blobs/sha256/" + downloading + ".unverified",
		"blobs/sha256/" + pending,
		"blobs/sha256/" + previous,
		"releases/README",
		"releases/echo@1.1.0@" + previous + ".dsse.json",
		"releases/echo@1.2.0@" + active + ".dsse.json",
		"releases/echo@1.3.0@" + pending + ".dsse.json",
	}
	sort.Strings(want)
	got := lsStore(t, s)
	if !equal(got, want) {
		t.Fatalf("after GC the store holds\n%q\nwant\n%q", got, want)
	}
	if removed != len(before)-len(want) {
		t.Errorf("GC says it removed %d files, %d went", removed, len(before)-len(want))
	}
	for _, d := range []string{active, previous, pending} {
		if _, err := s.Blob(d); err != nil {
			t.Errorf("Blob(%s) after GC: %v", d, err)
		}
	}
	if _, have, _ := s.Partial(downloading); have == 0 {
		t.Error("GC truncated a download in keep")
	}

	// Nothing more to do.
	if n, err := s.GC(map[string]bool{pending: true, downloading: true}); n != 0 || err != nil {
		t.Fatalf("second GC = %d, %v", n, err)
	}

	// Once the active release is healthy, the previous one is let go.
	if err := s.Update(func(st *State) error {
		m := st.Modules["echo"]
		m.Previous, m.Healthy = nil, true
		st.Modules["echo"] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.GC(map[string]bool{pending: false}); n != 5 || err != nil {
		t.Fatalf("GC after Previous went = %d, %v; want the previous and pending blobs and releases and the download", n, err)
	}
	want = []string{"blobs/sha256/" + active, "releases/README", "releases/echo@1.2.0@" + active + ".dsse.json"}
	if got := lsStore(t, s); !equal(got, want) {
		t.Fatalf("store holds %q, want %q", got, want)
	}
	if _, err := s.Blob(previous); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Blob(previous) after GC = %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOneStorePerDirectory(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if s2, err := Open(dir, s.log); !errors.Is(err, ErrLocked) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("a second Open = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	open(t, dir)
}

func TestClosedStoreRefusesWrites(t *testing.T) {
	s := open(t, t.TempDir())
	r, env := release(t, "echo", "1.0.0", wasm(10, 1))
	s.Close()
	d := digest(wasm(10, 1))
	errs := map[string]error{
		"Update":      s.Update(func(*State) error { return nil }),
		"PutRelease":  s.PutRelease(r, env),
		"PutTrust":    s.PutTrust(trustEnvelope(t, 1)),
		"DropPartial": s.DropPartial(d),
	}
	_, _, errs["Partial"] = s.Partial(d)
	_, errs["GC"] = s.GC(nil)
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
