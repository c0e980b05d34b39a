package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/store"
	"github.com/wasmfleet/wasmfleet/signing"
)

// The order of an update: download into the partial file, commit it (the store re-hashes
// it), record the release as active, and collect what is no longer needed.
func Example() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	s, err := store.Open(dir, zerolog.Nop())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	module := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])

	// The fetcher appends to the download; after a restart, have says where to resume.
	path, have, err := s.Partial(digest)
	if err != nil {
		panic(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		panic(err)
	}
	if _, err := f.Write(module[have:]); err != nil {
		panic(err)
	}
	if err := f.Close(); err != nil {
		panic(err)
	}

	// Only now does the blob get its name.
	if err := s.CommitBlob(digest); err != nil {
		panic(err)
	}
	fmt.Println("has blob:", s.HasBlob(digest))

	ref := signing.ReleaseRef{Name: "echo", Version: "1.0.0", SHA256: digest, Size: uint64(len(module))}
	err = s.Update(func(st *store.State) error {
		st.Modules["echo"] = store.ModuleState{Active: ref, Status: store.StatusActive}
		return nil
	})
	if err != nil {
		panic(err)
	}

	removed, err := s.GC(nil)
	fmt.Println("removed:", removed, err)
	fmt.Println("active:", s.State().Modules["echo"].Active)
	// Output:
	// has blob: true
	// removed: 0 <nil>
	// active: echo 1.0.0
}
