package testenv_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// writerSrc is a program that writes n bytes to a file and reports how it went: the child
// process of the Process and disk tests.
const writerSrc = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	fmt.Println("started")
	err := os.WriteFile(os.Args[1], make([]byte, n), 0o600)
	fmt.Println("write:", err)
	if len(os.Args) > 3 {
		time.Sleep(time.Hour) // until killed
	}
}
`

func buildWriter(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(writerSrc), 0o600); err != nil {
		t.Fatal(err)
	}
	return testenv.GoBuild(t, filepath.Join(dir, "main.go"), nil)
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProcessLinesStatsKill(t *testing.T) {
	bin := buildWriter(t)
	var mu sync.Mutex
	var lines []string
	p := testenv.StartProcess(t, testenv.ProcessOptions{Path: bin,
		Args: []string{filepath.Join(t.TempDir(), "f"), "1000", "stay"},
		OnLine: func(l string) {
			mu.Lock()
			lines = append(lines, l)
			mu.Unlock()
		}})
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(lines) == 2 }, "two lines")
	if lines[0] != "started" || lines[1] != "write: <nil>" {
		t.Fatalf("lines %q", lines)
	}
	st, err := p.Stats()
	if err != nil || st.RSS <= 0 || st.FDs < 3 || st.Threads < 1 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	p.Kill()
	var exit interface{ Sys() any }
	if !errors.As(p.Err(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit after Kill: %v", p.Err())
	}
	if p.Running() || !strings.Contains(p.Output(), "write: <nil>") {
		t.Fatalf("running %v, output %q", p.Running(), p.Output())
	}
}

func TestProcessFileSizeLimit(t *testing.T) {
	bin := buildWriter(t)
	p := testenv.StartProcess(t, testenv.ProcessOptions{Path: bin, FileSizeLimit: 64 << 10,
		Args: []string{filepath.Join(t.TempDir(), "f"), "1000000"}})
	<-p.Done()
	if !strings.Contains(p.Output(), "file too large") {
		t.Fatalf("a 1 MB write under a 64 KiB RLIMIT_FSIZE: %q", p.Output())
	}
}

// TestSmallDisk fills a tmpfs when the test may mount one (root), and otherwise shows the
// fallback the disk-full tests use: RLIMIT_FSIZE.
func TestSmallDisk(t *testing.T) {
	dir, why := testenv.SmallDisk(t, 256<<10)
	if dir == "" {
		t.Logf("no tmpfs (%v): the disk-full tests use RLIMIT_FSIZE instead (TestProcessFileSizeLimit)", why)
		if os.Geteuid() == 0 {
			t.Fatalf("running as root, yet no tmpfs: %v", why)
		}
		return
	}
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 1<<20), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("1 MiB into a 256 KiB tmpfs: %v, want ENOSPC", err)
	}
}

// ProcessCPU reads this test process's CPU time, which grows while it computes and agrees
// with getrusage.
func TestProcessCPU(t *testing.T) {
	before, err := testenv.ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var x uint64
	waitUntil(t, func() bool {
		for i := range 10_000_000 {
			x += uint64(i) * x
		}
		now, err := testenv.ProcessCPU(os.Getpid())
		return err == nil && now >= before+100*time.Millisecond
	}, "100 ms of CPU time")
	now, _ := testenv.ProcessCPU(os.Getpid())
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	rusage := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if d := rusage - now; d < 0 || d > time.Second {
		t.Errorf("ProcessCPU %v, getrusage %v (x %d)", now, rusage, x)
	}
	if _, err := testenv.ProcessCPU(1 << 30); err == nil {
		t.Error("ProcessCPU of a pid that does not exist: no error")
	}
}
