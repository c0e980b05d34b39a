package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// sealMagic starts every sealed cache entry: magic, 32-byte HMAC-SHA256, then the entry.
var sealMagic = []byte("WFCC1\n")

// indexName is the file in the cache directory, sealed like the entries, that says which
// module each entry was compiled from: the sha256 of the wasm given to Load.
const indexName = "wasmfleet-index.json"

// sealedCache keeps wazero's compiled code across restarts without trusting the directory it
// is kept in (see the package doc). wazero reads and writes only work, a directory this
// process made; dir holds sealed copies.
type sealedCache struct {
	dir, work string
	key       []byte
	log       zerolog.Logger
	known     map[string]bool   // entries (relative paths) present in both directories
	owners    map[string]string // entry -> sha256 (hex) of the module it was compiled from
}

func openSealedCache(dir, keyFile, workParent string, log zerolog.Logger) (*sealedCache, wazero.CompilationCache, error) {
	if rel, err := filepath.Rel(dir, keyFile); err == nil && !strings.HasPrefix(rel, "..") {
		return nil, nil, fmt.Errorf("compilation cache key %s must not be inside the cache directory %s", keyFile, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("compilation cache: %w", err)
	}
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	work, err := os.MkdirTemp(workParent, "wasmfleet-compiled-*")
	if err != nil {
		return nil, nil, fmt.Errorf("compilation cache: private directory: %w", err)
	}
	c := &sealedCache{dir: dir, work: work, key: key, log: log, known: map[string]bool{}, owners: map[string]string{}}
	if err := c.unseal(); err != nil {
		os.RemoveAll(work)
		return nil, nil, err
	}
	cc, err := wazero.NewCompilationCacheWithDir(work)
	if err != nil {
		os.RemoveAll(work)
		return nil, nil, fmt.Errorf("compilation cache: %w", err)
	}
	return c, cc, nil
}

func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	switch {
	case err == nil && len(key) == 32:
		return key, nil
	case err == nil:
		return nil, fmt.Errorf("compilation cache key %s: %d bytes, want 32", path, len(key))
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("compilation cache key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("compilation cache key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("compilation cache key: %w", err)
	}
	if err := atomicfile.Write(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("compilation cache key: %w", err)
	}
	return key, nil
}

func (c *sealedCache) mac(rel string, content []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(rel))
	h.Write([]byte{0})
	h.Write(content)
	return h.Sum(nil)
}

// seal returns content sealed for the relative path rel.
func (c *sealedCache) seal(rel string, content []byte) []byte {
	return append(append(append([]byte(nil), sealMagic...), c.mac(rel, content)...), content...)
}

// opened returns the content of raw, sealed for rel, if its seal verifies.
func (c *sealedCache) opened(rel string, raw []byte) ([]byte, bool) {
	n := len(sealMagic) + sha256.Size
	if len(raw) < n || !bytes.Equal(raw[:len(sealMagic)], sealMagic) || !hmac.Equal(raw[len(sealMagic):n], c.mac(rel, raw[n:])) {
		return nil, false
	}
	return raw[n:], true
}

// unseal copies every entry of dir whose seal verifies into work, and deletes the rest; then
// it reads the index of owners (see readIndex).
func (c *sealedCache) unseal() error {
	err := filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		rel, _ := filepath.Rel(c.dir, path)
		if d.IsDir() || rel == indexName {
			return nil
		}
		content, ok, err := c.readSealed(rel)
		if err != nil || !ok {
			return err
		}
		dst := filepath.Join(c.work, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		if err := os.WriteFile(dst, content, 0o600); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		c.known[rel] = true
		return nil
	})
	if err != nil {
		return err
	}
	return c.readIndex()
}

// readIndex reads the owners of the entries. An index that is missing or does not verify
// leaves every entry nobody's (the next retain removes them); one that does not verify is
// deleted.
func (c *sealedCache) readIndex() error {
	content, ok, err := c.readSealed(indexName)
	if err != nil || !ok {
		return err
	}
	if err := json.Unmarshal(content, &c.owners); err != nil {
		c.log.Warn().Err(err).Msg("compilation cache index is not valid; entries count as nobody's")
		c.owners = map[string]string{}
	}
	return nil
}

// readSealed reads dir's file rel and returns its content if its seal verifies. A file that
// does not verify is deleted (ok false, no error); a missing one is ok false too.
func (c *sealedCache) readSealed(rel string) (content []byte, ok bool, err error) {
	path := filepath.Join(c.dir, rel)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("compilation cache: %w", err)
	}
	if content, ok = c.opened(rel, raw); ok {
		return content, true, nil
	}
	c.log.Warn().Str("entry", rel).Msg("compilation cache entry has no valid seal; deleting it")
	if err := os.Remove(path); err != nil {
		return nil, false, fmt.Errorf("compilation cache: %w", err)
	}
	return nil, false, nil
}

// sync seals entries wazero has added to work since the last call, as compiled from the
// module whose sha256 is owner, and records that in the index.
func (c *sealedCache) sync(owner string) error {
	added := false
	err := filepath.WalkDir(c.work, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		rel, _ := filepath.Rel(c.work, path)
		if d.IsDir() || c.known[rel] || strings.HasSuffix(rel, ".tmp") {
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		dst := filepath.Join(c.dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		if err := atomicfile.Write(dst, c.seal(rel, content), 0o600); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		c.known[rel] = true
		c.owners[rel] = owner
		added = true
		return nil
	})
	if added {
		err = errors.Join(err, c.writeIndex())
	}
	return err
}

// writeIndex saves the owners of the entries known.
func (c *sealedCache) writeIndex() error {
	for rel := range c.owners {
		if !c.known[rel] {
			delete(c.owners, rel)
		}
	}
	b, err := json.Marshal(c.owners)
	if err != nil {
		return fmt.Errorf("compilation cache index: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(c.dir, indexName), c.seal(indexName, b), 0o600); err != nil {
		return fmt.Errorf("compilation cache index: %w", err)
	}
	return nil
}

// retain removes the entries compiled from modules whose sha256 is not in keep, and those
// whose module is not known (sealed before the index existed, or named by an index that did
// not verify), from both directories. It returns how many it removed.
func (c *sealedCache) retain(keep map[string]bool) (int, error) {
	removed := 0
	var errs []error
	for rel := range c.known {
		if keep[c.owners[rel]] {
			continue
		}
		for _, p := range []string{filepath.Join(c.dir, rel), filepath.Join(c.work, rel)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("compilation cache: %w", err))
			}
		}
		delete(c.known, rel)
		delete(c.owners, rel)
		removed++
	}
	if removed > 0 {
		errs = append(errs, c.writeIndex())
	}
	return removed, errors.Join(errs...)
}

func (c *sealedCache) close() error {
	if err := os.RemoveAll(c.work); err != nil {
		return fmt.Errorf("compilation cache: remove private directory: %w", err)
	}
	return nil
}
