package store

import (
	"fmt"
	"syscall"
)

// RoomReserve is what CheckRoom leaves free beyond the bytes asked for: room for the
// state file, key-value commits and compiled code after a download fills the disk.
const RoomReserve = 512 << 10

// CheckRoom returns an error wrapping syscall.ENOSPC when the file system of the store
// has fewer than need bytes plus RoomReserve free for an unprivileged writer (statfs
// f_bavail). An agent asks before it downloads, so that a module that cannot fit costs
// no bandwidth (a metered link's, on many devices) and no write to a full disk. When the
// file system cannot be asked, it returns nil: the write itself will tell.
func (s *Store) CheckRoom(need int64) error {
	if need <= 0 {
		return nil
	}
	free, ok := freeBytes(s.blobDir)
	if !ok || free >= need+RoomReserve {
		return nil
	}
	return fmt.Errorf("%d bytes free in the data directory, %d needed (and %d kept in reserve): %w",
		free, need, RoomReserve, syscall.ENOSPC)
}
