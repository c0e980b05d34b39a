package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/signing"
)

func (s *Store) blobPath(sha string) string    { return filepath.Join(s.blobDir, sha) }
func (s *Store) partialPath(sha string) string { return filepath.Join(s.blobDir, sha+unverifiedSuffix) }

// HasBlob reports whether the store holds a module with this digest. It does not read the
// bytes; Blob does, and reports a damaged blob as missing. An invalid digest is never held.
func (s *Store) HasBlob(digest string) bool {
	if checkDigest(digest) != nil {
		return false
	}
	fi, err := os.Lstat(s.blobPath(digest))
	return err == nil && fi.Mode().IsRegular()
}

// Blob returns the module with this digest, after hashing it again. A blob whose bytes no
// longer match is moved aside and reported with an error that wraps both ErrCorrupt and
// ErrNotFound, so that the caller fetches it again.
func (s *Store) Blob(digest string) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, fmt.Errorf("read blob: %w", err)
	}
	p := s.blobPath(digest)
	data, fi, why, err := readBlob(p, digest)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read blob %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", digest, err)
	}
	if why == "" {
		return data, nil
	}
	s.mu.Lock()
	to, err := s.moveAside(p, fi)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read blob %s: it %s; moving it aside: %w", digest, why, err)
	}
	s.log.Error().Str("sha256", digest).Str("moved_to", to).Str("problem", why).Msg("module blob is damaged; moved aside")
	return nil, fmt.Errorf("read blob %s: it %s (%s): %w: %w", digest, why, movedTo(to), ErrCorrupt, ErrNotFound)
}

// readBlob reads the blob at p. why says what is wrong with it when it is not the module
// of this digest; err is for failures to read at all.
func readBlob(p, digest string) (data []byte, fi os.FileInfo, why string, err error) {
	f, fi, err := openRegular(p)
	if errors.Is(err, errNotRegular) {
		return nil, fi, "is not a regular file", nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	defer f.Close()
	if fi.Size() > signing.MaxModuleSize {
		return nil, fi, fmt.Sprintf("is %d bytes, more than any module may be", fi.Size()), nil
	}
	data, err = io.ReadAll(io.LimitReader(f, signing.MaxModuleSize+1))
	if err != nil {
		return nil, nil, "", err
	}
	if got := digestOf(data); got != digest {
		return nil, fi, "hashes to " + got, nil
	}
	return data, fi, "", nil
}

// Partial returns the path of the download of the module with this digest
// (blobs/sha256/<hex>.unverified) and how many bytes it already holds, creating an empty
// file (mode 0600) when there is none. The fetcher appends to it (os.O_WRONLY|os.O_APPEND),
// for example with an HTTP range request from have, and calls CommitBlob when it has all
// the bytes, or DropPartial to give up. Downloads survive Close and restarts.
func (s *Store) Partial(digest string) (path string, have int64, err error) {
	if err := checkDigest(digest); err != nil {
		return "", 0, fmt.Errorf("partial download: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", 0, fmt.Errorf("partial download %s: %w", digest, ErrClosed)
	}
	p := s.partialPath(digest)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, filePerm)
	if err != nil {
		return "", 0, fmt.Errorf("partial download %s: %w", digest, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("partial download %s: %w", digest, err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("partial download %s: %s is not a regular file", digest, p)
	}
	return p, fi.Size(), nil
}

// CommitBlob hashes the download of the module with this digest and, when it matches, moves
// it into place durably (fsync the file, rename, fsync the directory). When it does not
// match, the download is deleted and the error wraps ErrDigestMismatch. The fetcher must
// have finished writing. Committing a blob the store already holds replaces it with the
// same bytes.
func (s *Store) CommitBlob(digest string) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("commit blob: %w", err)
	}
	p := s.partialPath(digest)
	f, fi, err := openRegular(p)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("commit blob %s: no download: %w", digest, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("commit blob %s: %w", digest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("commit blob %s: hash download: %w", digest, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got == digest {
		// Flush the bytes before the rename makes them the module: after a power cut the
		// name must never point at a file whose data did not reach the disk.
		if err := f.Sync(); err != nil {
			return fmt.Errorf("commit blob %s: sync: %w", digest, err)
		}
		if err := f.Chmod(filePerm); err != nil {
			return fmt.Errorf("commit blob %s: %w", digest, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("commit blob %s: %w", digest, ErrClosed)
	}
	cur, err := os.Lstat(p)
	if err != nil || !os.SameFile(fi, cur) {
		return fmt.Errorf("commit blob %s: the download was removed or replaced while it was being hashed", digest)
	}
	if got != digest {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("commit blob %s: %d bytes hash to %s; deleting the download: %v: %w", digest, n, got, err, ErrDigestMismatch)
		}
		s.log.Warn().Str("sha256", digest).Str("got", got).Int64("bytes", n).Msg("download does not match its digest; deleted")
		return fmt.Errorf("commit blob %s: %d bytes hash to %s (download deleted): %w", digest, n, got, ErrDigestMismatch)
	}
	if err := os.Rename(p, s.blobPath(digest)); err != nil {
		return fmt.Errorf("commit blob %s: %w", digest, err)
	}
	if err := atomicfile.SyncDir(s.blobDir); err != nil {
		return fmt.Errorf("commit blob %s: %w", digest, err)
	}
	s.log.Debug().Str("sha256", digest).Int64("bytes", n).Msg("module blob committed")
	return nil
}

// DropPartial deletes the download of the module with this digest, if there is one.
func (s *Store) DropPartial(digest string) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("drop partial download: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("drop partial download %s: %w", digest, ErrClosed)
	}
	if err := os.Remove(s.partialPath(digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop partial download %s: %w", digest, err)
	}
	return nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

var errNotRegular = errors.New("not a regular file")

// openRegular opens p for reading if it is a regular file (not a symlink, device or
// directory) and returns it with its FileInfo.
func openRegular(p string) (*os.File, os.FileInfo, error) {
	lfi, err := os.Lstat(p)
	if err != nil {
		return nil, nil, err
	}
	if !lfi.Mode().IsRegular() {
		return nil, lfi, fmt.Errorf("%s: %w", p, errNotRegular)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !os.SameFile(lfi, fi) {
		f.Close()
		return nil, nil, fmt.Errorf("%s changed while it was being opened", p)
	}
	return f, fi, nil
}

// movedTo says where moveAside put a file, for an error message.
func movedTo(to string) string {
	if to == "" {
		return "it has since been removed or replaced"
	}
	return "moved aside to " + to
}
