package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
)

var (
	// ErrInvalid is returned for an argument that cannot name anything in the store: a
	// digest that is not 64 lowercase hex digits, a ReleaseRef whose name or version could
	// not come from a valid manifest. Nothing on disk is touched.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound is returned when a blob or release is not in the store, including when it
	// was there but was damaged and has been moved aside: fetch it again.
	ErrNotFound = errors.New("not in the store")
	// ErrCorrupt is returned when something on disk does not match what it claims to be. The
	// damaged file has been moved aside (to a *.corrupt-<time> name) before this is returned.
	ErrCorrupt = errors.New("corrupt")
	// ErrDigestMismatch is returned by CommitBlob when a download does not hash to the digest
	// it was fetched for. The download has been deleted.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrStateVersion is returned by Open for a state.json of a version this agent does not
	// know (typically written by a newer agent). The file is left where it is.
	ErrStateVersion = errors.New("unknown state.json version")
	// ErrTrustDowngrade is returned by PutTrust for a trust file older than the stored one.
	ErrTrustDowngrade = errors.New("trust file version is lower than the stored one")
	// ErrLocked is returned by Open when another Store (in this or another process) holds
	// the data directory.
	ErrLocked = errors.New("data directory is in use")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("store is closed")
)

const (
	dirPerm  = 0o700
	filePerm = 0o600

	stateFile = "state.json"
	trustFile = "trust.json"
	lockFile  = "lock"

	unverifiedSuffix = ".unverified"
	corruptInfix     = ".corrupt-"
	releaseSuffix    = ".dsse.json"

	// maxVersionLen bounds a release version so that a release file name stays well under
	// the 255 bytes most filesystems allow (63 + 1 + 100 + 1 + 64 + 10 = 239).
	maxVersionLen = 100
)

// nameRE is the manifest's module-name rule (modules/manifest.go); it admits no '/', '.' or
// '@', so a name can never leave the releases directory or be split ambiguously.
var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Store is an open data directory. It is safe for concurrent use.
type Store struct {
	dir     string
	blobDir string
	relDir  string
	log     zerolog.Logger
	unlock  func() error
	mu      sync.Mutex // guards state, closed, and every rename or removal in dir
	state   State
	closed  bool
	now     func() time.Time
	// writeFile replaces a file atomically; tests swap it to inject a failed write.
	writeFile func(path string, data []byte, perm os.FileMode) error
}

// Open opens the store in dir, creating the directories it needs, and loads state.json.
//
// A state.json that cannot be read (bad JSON, fields that do not belong, references that
// are not valid) is moved aside to state.json.corrupt-<time> and Open returns an error
// that wraps ErrCorrupt and says where the file went: the store never starts empty without
// saying so. Opening again then starts with an empty state. A state.json of another version
// is an error wrapping ErrStateVersion and stays in place.
//
// Leftover temporary files of interrupted atomic writes are removed; *.unverified downloads
// are kept so that they can be resumed.
func Open(dir string, log zerolog.Logger) (*Store, error) {
	s := &Store{
		dir:       dir,
		blobDir:   filepath.Join(dir, "blobs", "sha256"),
		relDir:    filepath.Join(dir, "releases"),
		log:       log,
		now:       time.Now,
		writeFile: atomicfile.Write,
	}
	if err := s.makeDirs(); err != nil {
		return nil, err
	}
	unlock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.unlock = unlock
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	for _, d := range []string{dir, s.relDir, s.blobDir} {
		if err := s.removeTemps(d); err != nil {
			return nil, err
		}
	}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	s.checkReferenced()
	ok = true
	return s, nil
}

// Close releases the data directory. The Store must not be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.unlock()
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) makeDirs() error {
	_, err := os.Stat(s.dir)
	created := errors.Is(err, os.ErrNotExist)
	for _, d := range []string{s.dir, filepath.Join(s.dir, "blobs"), s.blobDir, s.relDir} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		// The data directory itself may be made by someone else (systemd's StateDirectory=,
		// a package); the directories inside it are ours and private.
		if d == s.dir && !created {
			continue
		}
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("open store: %s is not a directory", d)
		}
		if fi.Mode().Perm() != dirPerm {
			if err := os.Chmod(d, dirPerm); err != nil {
				return fmt.Errorf("open store: %w", err)
			}
		}
	}
	for _, d := range []string{s.dir, filepath.Join(s.dir, "blobs"), s.blobDir} {
		if err := atomicfile.SyncDir(d); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
	}
	return nil
}

// isTemp reports whether name is a temporary file of atomicfile.Write.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// removeTemps deletes what interrupted atomic writes left in d. Nothing else writes there
// while the lock is held, so every such file is dead.
func (s *Store) removeTemps(d string) error {
	ents, err := os.ReadDir(d)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	for _, e := range ents {
		if !isTemp(e.Name()) {
			continue
		}
		p := filepath.Join(d, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("open store: remove leftover %s: %w", p, err)
		}
		s.log.Info().Str("file", p).Msg("removed the temporary file of an interrupted write")
	}
	return nil
}

// checkReferenced logs what the state refers to but the store does not hold, so that the
// reason for a re-download is in the log.
func (s *Store) checkReferenced() {
	for name, m := range s.state.Modules {
		var refs []signing.ReleaseRef
		if m.Active != (signing.ReleaseRef{}) {
			refs = append(refs, m.Active)
		}
		if m.Previous != nil {
			refs = append(refs, *m.Previous)
		}
		for _, r := range refs {
			if !s.HasBlob(r.SHA256) {
				s.log.Warn().Str("module", name).Str("release", r.String()).Str("sha256", r.SHA256).Msg("state refers to a module blob the store does not hold")
			}
			if p, err := s.releasePath(r); err == nil {
				if _, err := os.Lstat(p); err != nil {
					s.log.Warn().Str("module", name).Str("release", r.String()).Msg("state refers to a release envelope the store does not hold")
				}
			}
		}
	}
}

// checkDigest validates a digest argument before it becomes part of a path.
func checkDigest(sha string) error {
	if !sha256RE.MatchString(sha) {
		return fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrInvalid, sha)
	}
	return nil
}

// checkRef validates a release reference before it becomes part of a path.
func checkRef(r signing.ReleaseRef) error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("%w: release name %q is not a module name (1 to 63 of a-z, 0-9 and -)", ErrInvalid, r.Name)
	}
	if len(r.Version) > maxVersionLen {
		return fmt.Errorf("%w: release %s: version is longer than %d bytes", ErrInvalid, r.Name, maxVersionLen)
	}
	if _, err := modules.ParseVersion(r.Version); err != nil {
		return fmt.Errorf("%w: release %s: %v", ErrInvalid, r.Name, err)
	}
	if err := checkDigest(r.SHA256); err != nil {
		return fmt.Errorf("release %s: %w", r, err)
	}
	if r.Size == 0 || r.Size > signing.MaxModuleSize {
		return fmt.Errorf("%w: release %s: size %d is out of range (1 to %d)", ErrInvalid, r, r.Size, signing.MaxModuleSize)
	}
	return nil
}

// corruptName is where a damaged file at p is moved.
func (s *Store) corruptName(p string) string {
	return p + corruptInfix + s.now().UTC().Format("20060102T150405.000000000Z")
}

// moveAside renames the file at p, if it is still the file fi describes, to a corrupt name
// and returns that name ("" when the file had already gone or been replaced). Callers hold
// s.mu.
func (s *Store) moveAside(p string, fi os.FileInfo) (string, error) {
	cur, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	if fi != nil && !os.SameFile(fi, cur) {
		return "", nil
	}
	to := s.corruptName(p)
	if err := os.Rename(p, to); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
		return to, err
	}
	return to, nil
}
