package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

// sealedCache keeps wazero's compiled code across restarts without trusting the directory it
// is kept in (see the package doc). wazero reads and writes only work, a directory this
// process made; dir holds sealed copies.
type sealedCache struct {
	dir, work string
	key       []byte
	log       zerolog.Logger
	known     map[string]bool // entries (relative paths) present in both directories
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
	c := &sealedCache{dir: dir, work: work, key: key, log: log, known: map[string]bool{}}
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

// unseal copies every entry of dir whose seal verifies into work, and deletes the rest.
func (c *sealedCache) unseal() error {
	return filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(c.dir, path)
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		n := len(sealMagic) + sha256.Size
		if len(raw) < n || !bytes.Equal(raw[:len(sealMagic)], sealMagic) || !hmac.Equal(raw[len(sealMagic):n], c.mac(rel, raw[n:])) {
			c.log.Warn().Str("entry", rel).Msg("compilation cache entry has no valid seal; deleting it")
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("compilation cache: %w", err)
			}
			return nil
		}
		dst := filepath.Join(c.work, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		if err := os.WriteFile(dst, raw[n:], 0o600); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		c.known[rel] = true
		return nil
	})
}

// sync seals entries wazero has added to work since the last call.
func (c *sealedCache) sync() error {
	return filepath.WalkDir(c.work, func(path string, d fs.DirEntry, err error) error {
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
		sealed := append(append(append([]byte(nil), sealMagic...), c.mac(rel, content)...), content...)
		dst := filepath.Join(c.dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		if err := atomicfile.Write(dst, sealed, 0o600); err != nil {
			return fmt.Errorf("compilation cache: %w", err)
		}
		c.known[rel] = true
		return nil
	})
}

func (c *sealedCache) close() error {
	if err := os.RemoveAll(c.work); err != nil {
		return fmt.Errorf("compilation cache: remove private directory: %w", err)
	}
	return nil
}
