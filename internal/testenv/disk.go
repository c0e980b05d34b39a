package testenv

import (
	"strconv"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes (rounded up to whole pages by the kernel) on a new
// t.TempDir and returns its path: a file system that fills up, for disk-full tests. It is
// unmounted when the test ends. Mounting needs root (CAP_SYS_ADMIN) on Linux; when it is not
// possible SmallDisk returns "" and why, and the test must fill the disk another way
// (ProcessOptions.FileSizeLimit): it may not skip.
func SmallDisk(t testing.TB, size int64) (dir string, why error) {
	t.Helper()
	dir = t.TempDir()
	unmount, err := mountTmpfs(dir, size)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Errorf("testenv: unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
