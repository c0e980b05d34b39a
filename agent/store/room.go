package store

import (
	"fmt"
	"syscall"
)

// RoomReserve is what CheckRoom leaves free beyond the bytes asked for: room for the
// state file, key-value commits and the like after a download fills the disk.
const RoomReserve = 512 << 10

// NoRoomError is CheckRoom's refusal. It matches syscall.ENOSPC (errors.Is), as a write to
// a full disk would.
type NoRoomError struct {
	Free, Need, Have int64 // bytes free, still to download, and already downloaded
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("%d bytes free in the data directory, %d more needed (%d already downloaded, %d kept in reserve)",
		e.Free, e.Need, e.Have, RoomReserve)
}

func (e *NoRoomError) Is(target error) bool { return target == syscall.ENOSPC }

// CheckRoom returns a *NoRoomError when the file system of the store has fewer than the
// size−have bytes a download still needs, plus RoomReserve, free for an unprivileged writer
// (statfs f_bavail). An agent asks before it downloads, so that a module that cannot fit
// costs no bandwidth (a metered link's, on many devices) and no write to a full disk. When
// the file system cannot say (it reports no blocks at all, as ramfs and some FUSE file
// systems do, or statfs fails), it returns nil: the write itself will tell.
func (s *Store) CheckRoom(size, have int64) error {
	need := size - have
	if need <= 0 {
		return nil
	}
	free, ok := freeBytes(s.blobDir)
	if !ok || free >= RoomReserve && free-RoomReserve >= need {
		return nil
	}
	return &NoRoomError{Free: free, Need: need, Have: have}
}
