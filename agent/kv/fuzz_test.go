package kv

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

// withCRC makes body a bucket file that passes the checksum, so that fuzzing reaches the
// entry parser behind it.
func withCRC(body []byte) []byte {
	out := append(append([]byte(nil), magic...), body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

// FuzzDecode feeds the bucket file parser anything, both as it is and with a valid magic and
// checksum around it: it must never panic, and whatever it accepts must encode to a file
// that decodes to the same entries. A bucket file read through Store.Bucket that does not
// decode is moved aside and the bucket starts empty.
func FuzzDecode(f *testing.F) {
	f.Add(encode(map[string][]byte{}))
	f.Add(encode(map[string][]byte{"count": {3}, "window": []byte("[21.5,22,22.5]")}))
	f.Add(encode(map[string][]byte{"k": make([]byte, 300)}))
	f.Add([]byte("WFKV1\n\x05count\x01\x03"))
	f.Add([]byte("WFKV1\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add([]byte("not a bucket"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, raw := range [][]byte{data, withCRC(data)} {
			got := map[string][]byte{}
			if err := decode(raw, got); err != nil {
				if err.Error() == "" {
					t.Fatal("empty error")
				}
				continue
			}
			again := map[string][]byte{}
			if err := decode(encode(got), again); err != nil {
				t.Fatalf("an accepted bucket does not survive a write and a read: %v", err)
			}
			if !maps.EqualFunc(got, again, bytes.Equal) {
				t.Fatalf("entries changed on a write and a read: %q, %q", got, again)
			}
		}

		os.Remove(filepath.Join(dir, "m.kv.damaged"))
		if err := os.WriteFile(filepath.Join(dir, "m.kv"), withCRC(data), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Bucket("m")
		if err != nil {
			t.Fatalf("a bucket file that does not decode must be moved aside, not fail the bucket: %v", err)
		}
		size := 0
		for k, v := range b.data {
			size += len(k) + len(v)
		}
		if size != b.Size() {
			t.Fatalf("size %d, entries add up to %d", b.Size(), size)
		}
	})
}
