package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmfleet/wasmfleet/signing"
)

// releasePath is releases/<name>@<version>@<sha256>.dsse.json. None of the three parts can
// hold a '/' or be ".." once checkRef has passed.
func (s *Store) releasePath(ref signing.ReleaseRef) (string, error) {
	if err := checkRef(ref); err != nil {
		return "", err
	}
	return filepath.Join(s.relDir, ref.Name+"@"+ref.Version+"@"+ref.SHA256+releaseSuffix), nil
}

// releaseDigest returns the module digest in a release file name, or "" when name is not
// one.
func releaseDigest(name string) string {
	base, ok := strings.CutSuffix(name, releaseSuffix)
	if !ok || len(base) < 66 || base[len(base)-65] != '@' {
		return ""
	}
	d := base[len(base)-64:]
	if checkDigest(d) != nil {
		return ""
	}
	return d
}

// checkEnvelope checks that envelope is a release envelope (DSSE, not a sigstore bundle)
// whose statement names exactly ref. It checks no signature.
func checkEnvelope(ref signing.ReleaseRef, envelope []byte) error {
	if len(envelope) > signing.MaxEnvelopeSize {
		return fmt.Errorf("envelope is %d bytes, more than %d", len(envelope), signing.MaxEnvelopeSize)
	}
	r, _, err := signing.InspectRelease(envelope)
	if err != nil {
		return err
	}
	if got := r.Ref(); got != ref {
		return fmt.Errorf("the envelope is for %s (sha256 %s, %d bytes), not %s (sha256 %s, %d bytes)",
			got, got.SHA256, got.Size, ref, ref.SHA256, ref.Size)
	}
	return nil
}

// PutRelease stores the release envelope of ref, atomically. The caller has verified it
// (signing.Verifier); the store only checks that the envelope's statement names ref
// exactly, so that it is never filed under another release. Pass the DSSE envelope:
// convert a sigstore bundle with signing.EnvelopeFromBundle first.
func (s *Store) PutRelease(ref signing.ReleaseRef, envelope []byte) error {
	p, err := s.releasePath(ref)
	if err != nil {
		return fmt.Errorf("put release: %w", err)
	}
	if err := checkEnvelope(ref, envelope); err != nil {
		return fmt.Errorf("put release %s: %w: %w", ref, ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("put release %s: %w", ref, ErrClosed)
	}
	if err := s.writeFile(p, envelope, filePerm); err != nil {
		return fmt.Errorf("put release %s: %w", ref, err)
	}
	return nil
}

// Release returns the stored envelope of ref. Verify it again before trusting it: the
// store only checks that it still names ref. A file that does not is moved aside and
// reported with an error that wraps both ErrCorrupt and ErrNotFound.
func (s *Store) Release(ref signing.ReleaseRef) ([]byte, error) {
	p, err := s.releasePath(ref)
	if err != nil {
		return nil, fmt.Errorf("read release: %w", err)
	}
	data, fi, err := readSmall(p, signing.MaxEnvelopeSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read release %s: %w", ref, ErrNotFound)
	}
	if err != nil && !errors.Is(err, errNotRegular) && !errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("read release %s: %w", ref, err)
	}
	if err == nil {
		err = checkEnvelope(ref, data)
		if err == nil {
			return data, nil
		}
	}
	why := err
	s.mu.Lock()
	to, err := s.moveAside(p, fi)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read release %s: %v; moving it aside: %w", ref, why, err)
	}
	s.log.Error().Str("release", ref.String()).Str("moved_to", to).AnErr("problem", why).Msg("release envelope is damaged; moved aside")
	return nil, fmt.Errorf("read release %s: %v (%s): %w: %w", ref, why, movedTo(to), ErrCorrupt, ErrNotFound)
}

var errTooLarge = errors.New("too large")

// readSmall reads the regular file p if it holds at most max bytes.
func readSmall(p string, max int64) ([]byte, os.FileInfo, error) {
	f, fi, err := openRegular(p)
	if err != nil {
		return nil, fi, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(data)) > max {
		return nil, fi, fmt.Errorf("%s is more than %d bytes: %w", p, max, errTooLarge)
	}
	return data, fi, nil
}

// Trust returns the stored trust-file envelope, or nil and no error when there is none.
// Verify it (signing.ParseTrust) before using it; when that fails, start again from the
// configured root and PutTrust what verifies.
func (s *Store) Trust() ([]byte, error) {
	data, _, err := readSmall(filepath.Join(s.dir, trustFile), signing.MaxEnvelopeSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read trust file: %w", err)
	}
	return data, nil
}

// PutTrust stores a trust-file envelope the caller has verified, atomically. A version
// lower than the stored one's is refused with ErrTrustDowngrade (the same version replaces
// it, e.g. with more signatures); a stored file that no longer parses is replaced.
func (s *Store) PutTrust(envelope []byte) error {
	if len(envelope) > signing.MaxEnvelopeSize {
		return fmt.Errorf("put trust file: %w: %d bytes, more than %d", ErrInvalid, len(envelope), signing.MaxEnvelopeSize)
	}
	t, _, err := signing.InspectTrust(envelope)
	if err != nil {
		return fmt.Errorf("put trust file: %w: %w", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("put trust file: %w", ErrClosed)
	}
	p := filepath.Join(s.dir, trustFile)
	old, _, err := readSmall(p, signing.MaxEnvelopeSize)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		s.log.Warn().Err(err).Msg("replacing a stored trust file that cannot be read")
	default:
		ot, _, err := signing.InspectTrust(old)
		if err != nil {
			s.log.Warn().Err(err).Msg("replacing a stored trust file that does not parse")
		} else if ot.Version() > t.Version() {
			return fmt.Errorf("put trust file: version %d, the store holds version %d: %w", t.Version(), ot.Version(), ErrTrustDowngrade)
		}
	}
	if err := s.writeFile(p, envelope, filePerm); err != nil {
		return fmt.Errorf("put trust file: %w", err)
	}
	return nil
}
