// Package kv holds the persistent key-value state of modules that have the kv capability:
// one bucket per module name (so state survives upgrades), a byte quota per bucket, and
// per-event transactions that commit only when the event succeeds.
//
// Each bucket is one file, replaced atomically (internal/atomicfile) on every commit, with a
// CRC so that a damaged file is noticed rather than half-read. Buckets are small (the quota is
// at most 16 MiB, typically a few KiB), so rewriting the whole file is cheaper than a
// database and has no partial states.
package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// MaxKeyLen is the longest key.
const MaxKeyLen = 256

// ErrQuota is returned by Tx.Set when the bucket would hold more than its quota.
var ErrQuota = errors.New("kv quota exceeded")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Store is a directory of buckets. It is safe for concurrent use.
type Store struct {
	dir string
	log zerolog.Logger

	mu      sync.Mutex
	buckets map[string]*Bucket
}

// Open opens (creating if needed) a store in dir.
func Open(dir string, log zerolog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open kv store: %w", err)
	}
	return &Store{dir: dir, log: log, buckets: map[string]*Bucket{}}, nil
}

// Bucket returns the bucket of module name, loading it from disk the first time.
func (s *Store) Bucket(name string) (*Bucket, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("kv bucket %q: not a module name", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.buckets[name]; ok {
		return b, nil
	}
	b := &Bucket{path: filepath.Join(s.dir, name+".kv"), data: map[string][]byte{}}
	raw, err := os.ReadFile(b.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("load kv bucket %s: %w", name, err)
	default:
		if err := decode(raw, b.data); err != nil {
			// Keep the damaged file for inspection instead of overwriting it later.
			aside := b.path + ".damaged"
			if rerr := os.Rename(b.path, aside); rerr != nil {
				return nil, fmt.Errorf("load kv bucket %s: %w (and could not move it aside: %v)", name, err, rerr)
			}
			s.log.Error().Err(err).Str("bucket", name).Str("moved_to", aside).Msg("kv bucket damaged; starting empty")
			b.data = map[string][]byte{}
		}
	}
	for k, v := range b.data {
		b.size += len(k) + len(v)
	}
	s.buckets[name] = b
	return b, nil
}

// Bucket is one module's committed state.
type Bucket struct {
	path string
	mu   sync.Mutex
	data map[string][]byte
	size int
}

// Size is the committed size in bytes (keys plus values).
func (b *Bucket) Size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// Begin starts a transaction limited to quota bytes.
func (b *Bucket) Begin(quota int) *Tx {
	return &Tx{b: b, quota: quota}
}

// Tx is one event's view of a bucket: its writes are visible to its own reads, and reach the
// bucket only on Commit. A Tx is used by one goroutine.
type Tx struct {
	b       *Bucket
	quota   int
	changes map[string][]byte // nil value: deleted
	delta   int               // size change relative to the committed bucket
}

// Get returns the value of key.
func (t *Tx) Get(key string) ([]byte, bool) {
	if v, ok := t.changes[key]; ok {
		return v, v != nil
	}
	t.b.mu.Lock()
	v, ok := t.b.data[key]
	t.b.mu.Unlock()
	return v, ok
}

// Set stores value under key, or fails with ErrQuota (and changes nothing).
func (t *Tx) Set(key string, value []byte) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("kv key of %d bytes: keys are 1 to %d bytes", len(key), MaxKeyLen)
	}
	old, had := t.Get(key)
	delta := len(value) - len(old)
	if !had {
		delta += len(key)
	}
	if t.b.Size()+t.delta+delta > t.quota {
		return fmt.Errorf("%w: setting %q would make %d bytes, the quota is %d", ErrQuota, key, t.b.Size()+t.delta+delta, t.quota)
	}
	if t.changes == nil {
		t.changes = map[string][]byte{}
	}
	t.changes[key] = append(make([]byte, 0, len(value)), value...)
	t.delta += delta
	return nil
}

// Delete removes key.
func (t *Tx) Delete(key string) {
	old, had := t.Get(key)
	if !had {
		return
	}
	if t.changes == nil {
		t.changes = map[string][]byte{}
	}
	t.changes[key] = nil
	t.delta -= len(key) + len(old)
}

// Commit applies the transaction and persists the bucket. A Tx without writes costs nothing.
func (t *Tx) Commit() error {
	if len(t.changes) == 0 {
		return nil
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, v := range t.changes {
		old, had := b.data[k]
		if had {
			b.size -= len(k) + len(old)
		}
		if v == nil {
			delete(b.data, k)
			continue
		}
		b.data[k] = v
		b.size += len(k) + len(v)
	}
	t.changes = nil
	if err := atomicfile.Write(b.path, encode(b.data), 0o600); err != nil {
		return fmt.Errorf("persist kv bucket: %w", err)
	}
	return nil
}

var magic = []byte("WFKV1\n")

// encode writes magic, then per entry (sorted by key) uvarint key length, key, uvarint value
// length, value, and finally the CRC-32C of everything before it.
func encode(data map[string][]byte) []byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := append([]byte(nil), magic...)
	for _, k := range keys {
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
		out = binary.AppendUvarint(out, uint64(len(data[k])))
		out = append(out, data[k]...)
	}
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func decode(raw []byte, into map[string][]byte) error {
	if len(raw) < len(magic)+4 || !bytes.Equal(raw[:len(magic)], magic) {
		return errors.New("not a kv bucket file")
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return errors.New("kv bucket checksum mismatch")
	}
	p := body[len(magic):]
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return nil, errors.New("kv bucket entry runs past the end")
		}
		v := p[w : w+int(n)]
		p = p[w+int(n):]
		return v, nil
	}
	for len(p) > 0 {
		k, err := next()
		if err != nil {
			return err
		}
		v, err := next()
		if err != nil {
			return err
		}
		into[string(k)] = append([]byte(nil), v...)
	}
	return nil
}
