package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// t0 is the fixed time of every test: no test reads the wall clock for its data.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// open opens a store in dir and closes it when the test ends.
func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// wasm is a stand-in module of n bytes: the store never looks inside.
func wasm(n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b, "\x00asm\x01\x00\x00\x00")
	for i := 8; i < n; i++ {
		b[i] = seed + byte(i*7)
	}
	return b
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// download writes data into the store as the fetcher would and commits it.
func download(t testing.TB, s *Store, data []byte) string {
	t.Helper()
	d := digest(data)
	p, have, err := s.Partial(d)
	if err != nil {
		t.Fatalf("Partial: %v", err)
	}
	appendFile(t, p, data[have:])
	if err := s.CommitBlob(d); err != nil {
		t.Fatalf("CommitBlob: %v", err)
	}
	return d
}

func appendFile(t testing.TB, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// release signs a release of name@version for data and returns its reference and envelope.
func release(t testing.TB, name, version string, data []byte) (signing.ReleaseRef, []byte) {
	t.Helper()
	m := modules.Default(name)
	m.Version = version
	env, err := signing.SignRelease(context.Background(), m, bytes.NewReader(data), signingtest.NewSigner(t))
	if err != nil {
		t.Fatalf("SignRelease: %v", err)
	}
	return signing.ReleaseRef{Name: name, Version: version, SHA256: digest(data), Size: uint64(len(data))}, env
}

// trustEnvelope signs a trust file of version v.
func trustEnvelope(t testing.TB, v uint64) []byte {
	t.Helper()
	root := signingtest.NewSigner(t)
	f := signingtest.NewTrustFile(v, t0.Add(365*24*time.Hour))
	f.Roles = signing.Roles{Root: signingtest.Role(t, f, 1, root), Release: signingtest.Role(t, f, 1, signingtest.NewSigner(t)),
		Rollout: signingtest.Role(t, f, 1, signingtest.NewSigner(t))}
	return signingtest.Sign(t, f, root)
}

// ref is a syntactically valid reference for state tests that need no envelope.
func ref(name, version string, seed byte) signing.ReleaseRef {
	data := wasm(64, seed)
	return signing.ReleaseRef{Name: name, Version: version, SHA256: digest(data), Size: uint64(len(data))}
}

// glob lists the files matching pattern under dir.
func glob(t testing.TB, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
