package testenv

import "syscall"

// sysProcAttr has the kernel kill a server when the test binary dies (a panic or a test
// timeout), so no broker outlives its test holding a port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
