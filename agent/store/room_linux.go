package store

import (
	"math"
	"syscall"
)

// freeBytes is what an unprivileged writer may still write to the file system holding
// dir (statfs f_bavail); ok is false when the file system cannot say: statfs fails, or
// reports no blocks at all (ramfs, FUSE file systems that do not answer it).
func freeBytes(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks == 0 {
		return 0, false
	}
	unit := int64(st.Frsize)
	if unit <= 0 {
		unit = int64(st.Bsize)
	}
	if unit <= 0 || st.Bavail > uint64(math.MaxInt64/unit) {
		return 0, false
	}
	return int64(st.Bavail) * unit, true
}
