//go:build !linux

package testenv

import (
	"errors"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func setFileSizeLimit(pid int, bytes int64) error {
	return errors.New("RLIMIT_FSIZE of another process needs Linux's prlimit(2)")
}

func mountTmpfs(dir string, size int64) (func() error, error) {
	return nil, errors.New("tmpfs mounts are only made on Linux")
}
