package store

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// GC removes what nothing needs: module blobs, release envelopes and downloads whose digest
// is neither the Active or Previous release of a module in the state nor a key of keep set
// to true, and
// everything moved aside as corrupt (*.corrupt-<time>; state.json's are left for the
// operator). It returns how many files it removed.
//
// keep holds the digests of the releases the caller is working on and has not yet recorded
// in the state: downloads in progress, and blobs committed or envelopes stored but not yet
// activated. GC holds the store's lock, so a digest is either in the state when GC looks or
// must be in keep; nothing referenced is ever removed. An invalid digest in keep is an
// error and nothing is removed. keep may be nil. Files GC does not recognise are left alone.
func (s *Store) GC(keep map[string]bool) (removed int, err error) {
	live := map[string]bool{}
	for d, k := range keep {
		if err := checkDigest(d); err != nil {
			return 0, fmt.Errorf("gc: keep: %w", err)
		}
		live[d] = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("gc: %w", ErrClosed)
	}
	maps.Copy(live, s.state.Kept())

	var errs []error
	sweep := func(dir string, digestOf func(name string) (string, bool)) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			return
		}
		n := 0
		for _, e := range ents {
			name := e.Name()
			if isTemp(name) {
				continue // an atomic write in progress; Open removes dead ones
			}
			digest, ours := digestOf(name)
			corrupt := strings.Contains(name, corruptInfix)
			switch {
			case !ours && !corrupt:
				s.log.Debug().Str("file", filepath.Join(dir, name)).Msg("gc: leaving a file the store does not know")
				continue
			case !corrupt && live[digest]:
				continue
			}
			p := filepath.Join(dir, name)
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			s.log.Debug().Str("file", p).Msg("gc: removed")
			n++
		}
		if n > 0 {
			if err := atomicfile.SyncDir(dir); err != nil {
				errs = append(errs, err)
			}
		}
		removed += n
	}
	sweep(s.blobDir, func(name string) (string, bool) {
		d := strings.TrimSuffix(name, unverifiedSuffix)
		return d, checkDigest(d) == nil
	})
	sweep(s.relDir, func(name string) (string, bool) {
		d := releaseDigest(name)
		return d, d != ""
	})
	if removed > 0 {
		s.log.Info().Int("removed", removed).Msg("gc: removed unused files")
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("gc: %w", err)
	}
	return removed, nil
}
