//go:build linux

package store

import (
	"errors"
	"math"
	"strings"
	"syscall"
	"testing"
)

func TestCheckRoom(t *testing.T) {
	s := open(t, t.TempDir())
	for _, c := range []struct{ size, have int64 }{{0, 0}, {1, 0}, {1 << 20, 0}, {1 << 62, 1 << 62}, {10, 20}, {math.MaxInt64, 0}} {
		err := s.CheckRoom(c.size, c.have)
		if c.size-c.have < 1<<40 && err != nil {
			t.Errorf("CheckRoom(%d, %d) on a test directory: %v", c.size, c.have, err)
		}
		if c.size-c.have >= 1<<40 && err == nil {
			t.Errorf("CheckRoom(%d, %d): room for it", c.size, c.have)
		}
	}
	err := s.CheckRoom(1<<62, 1<<20)
	var nr *NoRoomError
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &nr) || nr.Need != 1<<62-1<<20 || nr.Have != 1<<20 || nr.Free <= 0 {
		t.Fatalf("CheckRoom(4 EiB): %v, want a NoRoomError matching ENOSPC", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "bytes free in the data directory") || !strings.Contains(msg, "already downloaded") {
		t.Errorf("message %q", msg)
	}
}
