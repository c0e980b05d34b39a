package testenv

import (
	"syscall"
	"unsafe"
)

// sysProcAttr has the kernel kill a server when the test binary dies (a panic or a test
// timeout), so no broker outlives its test holding a port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// setFileSizeLimit sets RLIMIT_FSIZE (soft and hard) of process pid with prlimit(2).
func setFileSizeLimit(pid int, bytes int64) error {
	lim := syscall.Rlimit{Cur: uint64(bytes), Max: uint64(bytes)}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE),
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// mountTmpfs mounts a tmpfs of size bytes on dir and returns how to unmount it.
func mountTmpfs(dir string, size int64) (unmount func() error, err error) {
	opts := "size=" + itoa(size) + ",mode=0700"
	if err := syscall.Mount("wasmfleet-test", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return nil, err
	}
	return func() error { return syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}
