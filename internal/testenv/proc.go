package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GoBuild builds the Go package pkg (an import path) into a new t.TempDir and returns the
// binary's path. env is added to the environment of `go build` (GOOS=..., CGO_ENABLED=0);
// flags go before the package (-race, -ldflags ...).
func GoBuild(t testing.TB, pkg string, env []string, flags ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("testenv: go not found on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(pkg), ".go"))
	args := append(append([]string{"build", "-o", bin}, flags...), pkg)
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// ProcessOptions says how to run a Process.
type ProcessOptions struct {
	// Name is what failure messages call the process; default the binary's base name.
	Name string
	Path string
	Args []string
	// Env is the whole environment; nil means the test's own.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// FileSizeLimit, when above 0, is the process's RLIMIT_FSIZE in bytes (Linux): a write
	// that would make a file larger fails with EFBIG. It is set right after the start,
	// before the process can have written much.
	FileSizeLimit int64
	// OnLine, when set, is called with each line of output (stdout and stderr) as it
	// arrives, from the goroutine that reads it. It must not block for long.
	OnLine func(line string)
}

// Process is a program a test runs as a child: its stdout and stderr are kept (and logged
// when the test fails), it can be killed with SIGKILL (what a power cut does to a process)
// or stopped with SIGTERM, and its resident memory and open descriptors can be read. It is
// stopped when the test ends (SIGTERM, then SIGKILL after 10 s), and dies with the test
// binary (Pdeathsig).
type Process struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *lineBuffer
	done chan struct{}
	err  error
}

// StartProcess starts a process.
func StartProcess(t testing.TB, o ProcessOptions) *Process {
	t.Helper()
	p := &Process{t: t, name: o.Name, out: &lineBuffer{onLine: o.OnLine}, done: make(chan struct{})}
	if p.name == "" {
		p.name = filepath.Base(o.Path)
	}
	p.cmd = exec.Command(o.Path, o.Args...)
	p.cmd.Env, p.cmd.Dir = o.Env, o.Dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", p.name, err)
	}
	if o.FileSizeLimit > 0 {
		if err := setFileSizeLimit(p.cmd.Process.Pid, o.FileSizeLimit); err != nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			t.Fatalf("testenv: %s: set RLIMIT_FSIZE: %v", p.name, err)
		}
	}
	go func() { p.err = p.cmd.Wait(); p.out.flush(); close(p.done) }()
	t.Cleanup(func() {
		if p.Running() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					t.Errorf("testenv: %s: after SIGTERM: %v", p.name, p.err)
				}
			case <-time.After(stopTimeout):
				p.cmd.Process.Kill()
				<-p.done
				t.Errorf("testenv: %s did not stop within %v of SIGTERM", p.name, stopTimeout)
			}
		}
		if t.Failed() {
			t.Logf("testenv: %s output:\n%s", p.name, p.Output())
		}
	})
	return p
}

// Name is what failure messages call the process.
func (p *Process) Name() string { return p.name }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far, stdout and stderr interleaved.
func (p *Process) Output() string { return p.out.String() }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Done is closed once the process has exited and its output has been read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit code 0); valid after Done.
func (p *Process) Err() error { return p.err }

// Kill sends SIGKILL and waits until the process is gone: no handler runs, nothing is
// flushed, as when the power goes (except that the kernel keeps what it had been given).
func (p *Process) Kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("testenv: kill %s: %v", p.name, err)
	}
	<-p.done
}

// Signal sends sig without waiting; safe from any goroutine (a timer that cuts the power at
// a chosen instant). Signalling a process that has exited is not an error.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// Stop sends SIGTERM and waits for the exit; a process still running after 10 s is killed
// and the test fails. It returns the exit error.
func (p *Process) Stop() error {
	p.t.Helper()
	if !p.Running() {
		return p.err
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("testenv: %s did not stop within %v of SIGTERM", p.name, stopTimeout)
	}
	return p.err
}

// ProcStats is what /proc says about a process.
type ProcStats struct {
	RSS     int64 // resident memory, bytes (VmRSS)
	FDs     int   // open file descriptors
	Threads int
	CPU     time.Duration // user + system time so far
}

// Stats reads the process's resident memory, descriptors and threads from /proc (Linux).
func (p *Process) Stats() (ProcStats, error) {
	var s ProcStats
	dir := filepath.Join("/proc", strconv.Itoa(p.Pid()))
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return s, fmt.Errorf("read /proc status of %s: %w", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "VmRSS" && len(f) == 2 && f[1] == "kB":
			n, _ := strconv.ParseInt(f[0], 10, 64)
			s.RSS = n << 10
		case k == "Threads" && len(f) == 1:
			s.Threads, _ = strconv.Atoi(f[0])
		}
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return s, fmt.Errorf("list descriptors of %s: %w", p.name, err)
	}
	s.FDs = len(fds)
	if s.CPU, err = ProcessCPU(p.Pid()); err != nil {
		return s, fmt.Errorf("read the CPU time of %s: %w", p.name, err)
	}
	return s, nil
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every Linux architecture.
const clockTick = 10 * time.Millisecond

// ProcessCPU returns the user + system time process pid has used (Linux, /proc/PID/stat).
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are the 14th and 15th fields; the state (3rd) is f[0].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// lineBuffer keeps a process's output and hands each complete line to onLine.
type lineBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	partial []byte
	onLine  func(string)
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	var lines []string
	if l.onLine != nil {
		l.partial = append(l.partial, p...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, string(l.partial[:i]))
			l.partial = l.partial[i+1:]
		}
	}
	l.mu.Unlock()
	for _, s := range lines {
		l.onLine(s)
	}
	return len(p), nil
}

// flush hands a last line without a newline to onLine.
func (l *lineBuffer) flush() {
	l.mu.Lock()
	rest := string(l.partial)
	l.partial = nil
	l.mu.Unlock()
	if rest != "" && l.onLine != nil {
		l.onLine(rest)
	}
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
