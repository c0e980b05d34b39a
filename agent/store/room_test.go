//go:build linux

package store

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestCheckRoom(t *testing.T) {
	s := open(t, t.TempDir())
	for _, need := range []int64{-1, 0, 1, 1 << 20} {
		if err := s.CheckRoom(need); err != nil {
			t.Errorf("CheckRoom(%d) on a test directory: %v", need, err)
		}
	}
	err := s.CheckRoom(1 << 62)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "bytes free in the data directory") {
		t.Errorf("CheckRoom(4 EiB): %v, want ENOSPC with the free space", err)
	}
}
