package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/signing"
)

func TestReleaseRoundTrip(t *testing.T) {
	s := open(t, t.TempDir())
	r, env := release(t, "threshold-alert", "1.2.0-rc.1+build.7", wasm(200, 1))
	if _, err := s.Release(r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Release before PutRelease = %v, want ErrNotFound", err)
	}
	if err := s.PutRelease(r, env); err != nil {
		t.Fatal(err)
	}
	got, err := s.Release(r)
	if err != nil || !bytes.Equal(got, env) {
		t.Fatalf("Release = %v", err)
	}
	p := filepath.Join(s.Dir(), "releases", "threshold-alert@1.2.0-rc.1+build.7@"+r.SHA256+".dsse.json")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("release file %s: %v", p, err)
	}
	// Another release of the same name and version (other bytes) is filed apart.
	r2, env2 := release(t, "threshold-alert", "1.2.0-rc.1+build.7", wasm(200, 2))
	if err := s.PutRelease(r2, env2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Release(r); !bytes.Equal(got, env) {
		t.Fatal("a release of the same name and version for other bytes replaced the first")
	}
}

// The store files an envelope only under the reference its statement names.
func TestPutReleaseRefusesAnotherRef(t *testing.T) {
	s := open(t, t.TempDir())
	r, env := release(t, "echo", "1.0.0", wasm(100, 1))
	other := func(f func(*signing.ReleaseRef)) signing.ReleaseRef { o := r; f(&o); return o }
	cases := map[string]struct {
		ref signing.ReleaseRef
		env []byte
	}{
		"other name":      {other(func(o *signing.ReleaseRef) { o.Name = "other" }), env},
		"other version":   {other(func(o *signing.ReleaseRef) { o.Version = "1.0.1" }), env},
		"other digest":    {other(func(o *signing.ReleaseRef) { o.SHA256 = digest([]byte("x")) }), env},
		"other size":      {other(func(o *signing.ReleaseRef) { o.Size++ }), env},
		"not an envelope": {r, []byte("{}")},
		"trust file":      {r, trustEnvelope(t, 1)},
		"too large":       {r, make([]byte, signing.MaxEnvelopeSize+1)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := s.PutRelease(c.ref, c.env); !errors.Is(err, ErrInvalid) {
				t.Fatalf("PutRelease = %v, want ErrInvalid", err)
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "releases")); len(ents) != 0 {
		t.Fatalf("releases/ holds %d files after refused puts", len(ents))
	}
}

// Names and versions come from the network: none may leave releases/.
func TestBadRefsTouchNothing(t *testing.T) {
	root := t.TempDir()
	s := open(t, filepath.Join(root, "data"))
	good, env := release(t, "echo", "1.0.0", wasm(100, 1))
	bad := func(f func(*signing.ReleaseRef)) signing.ReleaseRef { o := good; f(&o); return o }
	refs := []signing.ReleaseRef{
		bad(func(o *signing.ReleaseRef) { o.Name = "../../etc/passwd" }),
		bad(func(o *signing.ReleaseRef) { o.Name = "a/b" }),
		bad(func(o *signing.ReleaseRef) { o.Name = ".." }),
		bad(func(o *signing.ReleaseRef) { o.Name = "" }),
		bad(func(o *signing.ReleaseRef) { o.Name = "Echo" }),
		bad(func(o *signing.ReleaseRef) { o.Name = "echo@1" }),
		bad(func(o *signing.ReleaseRef) { o.Version = "1.0.0/../../../x" }),
		bad(func(o *signing.ReleaseRef) { o.Version = "../1.0.0" }),
		bad(func(o *signing.ReleaseRef) { o.Version = "1.0" }),
		bad(func(o *signing.ReleaseRef) { o.Version = "1.0.0-" + strings.Repeat("a", 100) }),
		bad(func(o *signing.ReleaseRef) { o.SHA256 = "../../etc/passwd" }),
		bad(func(o *signing.ReleaseRef) { o.SHA256 = strings.ToUpper(good.SHA256) }),
		bad(func(o *signing.ReleaseRef) { o.Size = 0 }),
		bad(func(o *signing.ReleaseRef) { o.Size = signing.MaxModuleSize + 1 }),
	}
	for _, r := range refs {
		if err := s.PutRelease(r, env); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutRelease(%+v) = %v, want ErrInvalid", r, err)
		}
		if _, err := s.Release(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("Release(%+v) = %v, want ErrInvalid", r, err)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Errorf("the test root holds %d entries, want only the data directory", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "releases")); len(ents) != 0 {
		t.Errorf("releases/ holds %d entries, want none", len(ents))
	}
}

func TestReleaseDamaged(t *testing.T) {
	s := open(t, t.TempDir())
	r, env := release(t, "echo", "1.0.0", wasm(100, 1))
	if err := s.PutRelease(r, env); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), "releases", "echo@1.0.0@"+r.SHA256+".dsse.json")
	if err := os.WriteFile(p, env[:len(env)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Release(r)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Release of a damaged file = %v, want ErrCorrupt and ErrNotFound", err)
	}
	if aside := glob(t, filepath.Dir(p), "*.corrupt-*"); len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	if _, err := s.Release(r); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Release after moving aside = %v, want only ErrNotFound", err)
	}
}

func TestTrust(t *testing.T) {
	s := open(t, t.TempDir())
	if got, err := s.Trust(); got != nil || err != nil {
		t.Fatalf("Trust of a new store = %q, %v; want nil, nil", got, err)
	}
	v1, v2 := trustEnvelope(t, 1), trustEnvelope(t, 2)
	if err := s.PutTrust(v1); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Trust(); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("Trust = %v", err)
	}
	if err := s.PutTrust(v2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTrust(v1); !errors.Is(err, ErrTrustDowngrade) {
		t.Fatalf("PutTrust of version 1 over 2 = %v, want ErrTrustDowngrade", err)
	}
	if err := s.PutTrust(v2); err != nil {
		t.Fatalf("PutTrust of the same version again: %v", err)
	}
	_, env := release(t, "echo", "1.0.0", wasm(10, 1))
	for name, bad := range map[string][]byte{"garbage": []byte("not json"), "release": env, "empty": nil} {
		if err := s.PutTrust(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutTrust(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if got, _ := s.Trust(); !bytes.Equal(got, v2) {
		t.Fatal("refused PutTrust calls changed the stored trust file")
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), "trust.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trust.json: %v", err)
	}

	// A damaged trust.json is replaced by the next verified one, whatever its version.
	if err := os.WriteFile(filepath.Join(s.Dir(), "trust.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTrust(v1); err != nil {
		t.Fatalf("PutTrust over a damaged file: %v", err)
	}
}
