package store

import (
	"math"
	"syscall"
)

// freeBytes is what an unprivileged writer may still write to the file system holding
// dir (statfs f_bavail); ok is false when the file system cannot say.
func freeBytes(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
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
