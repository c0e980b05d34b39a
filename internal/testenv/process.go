package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 20 * time.Second // a cold start of either server takes well under a second
	stopTimeout  = 10 * time.Second
	pollInterval = 10 * time.Millisecond
	logTailBytes = 4096
)

// server is one external process that can be started, stopped, killed and started again
// with the same command line. Its stdout and stderr are appended to logFile across restarts.
type server struct {
	t       testing.TB
	name    string
	path    string
	args    []string
	env     []string // added to os.Environ()
	logFile string
	ready   func() error // nil once the server answers

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	err  error         // cmd.Wait's result, valid after done
}

func (s *server) start() {
	s.t.Helper()
	if s.running() {
		s.t.Fatalf("testenv: %s: Start while running", s.name)
	}
	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("testenv: %s: open log: %v", s.name, err)
	}
	defer log.Close() // the child holds its own descriptor
	fmt.Fprintf(log, "=== testenv: starting %s at %s\n", s.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.path, s.args...)
	cmd.Dir = filepath.Dir(s.logFile)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: %s: start %s: %v", s.name, s.path, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		s.err = cmd.Wait()
		close(done)
	}(s.done)

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.done:
			s.t.Fatalf("testenv: %s exited while starting (%v); log tail:\n%s", s.name, s.err, s.tail())
		default:
		}
		err := s.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.kill()
			s.t.Fatalf("testenv: %s not ready after %v: %v; log tail:\n%s", s.name, readyTimeout, err, s.tail())
		}
		time.Sleep(pollInterval)
	}
}

func (s *server) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit; a server that does not exit in time is killed
// and the test fails.
func (s *server) stop() {
	s.t.Helper()
	if !s.running() {
		s.t.Fatalf("testenv: %s: Stop while not running", s.name)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
		s.t.Fatalf("testenv: %s did not exit %v after SIGTERM; log tail:\n%s", s.name, stopTimeout, s.tail())
	}
	var exit *exec.ExitError
	if s.err != nil && !errors.As(s.err, &exit) {
		s.t.Fatalf("testenv: %s: wait: %v", s.name, s.err)
	}
}

// kill sends SIGKILL and waits for the exit. It is a no-op on a stopped server.
func (s *server) kill() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// tail is the end of the log file, for failure messages.
func (s *server) tail() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// cleanup kills the server when the test ends and logs its tail if the test failed.
func (s *server) cleanup() {
	s.kill()
	if s.t.Failed() {
		s.t.Logf("testenv: %s log (%s) tail:\n%s", s.name, s.logFile, s.tail())
	}
}

// freePorts asks the kernel for n distinct free TCP ports on 127.0.0.1. They are free when
// this returns, not reserved: another process could take one before the server binds it,
// which on a test machine is rare enough.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: find a free port: %v", err)
		}
		defer l.Close() // held until all are chosen, so they differ
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func dialReady(ports ...int) func() error {
	return func() error {
		for _, p := range ports {
			c, err := net.DialTimeout("tcp", hostPort(p), time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	}
}

// findBinary looks name up on PATH, then in the given directories.
func findBinary(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("testenv: %s not found on PATH or in %v: run make deps", name, dirs)
	return ""
}
