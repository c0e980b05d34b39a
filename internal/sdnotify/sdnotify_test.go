package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens the systemd side: a unixgram socket at name (a path, or '@' and an abstract
// name), and points NOTIFY_SOCKET at it for the test.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

// receive reads one datagram, or fails after a few seconds.
func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@wasmfleet-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listen(t, tc.addr(t))
			for _, step := range []struct {
				send func() error
				want string
			}{
				{Ready, "READY=1"},
				{Watchdog, "WATCHDOG=1"},
				{Stopping, "STOPPING=1"},
				{func() error { return Notify("STATUS=compiling\nREADY=1") }, "STATUS=compiling\nREADY=1"},
			} {
				if err := step.send(); err != nil {
					t.Fatal(err)
				}
				if got := receive(t, c); got != step.want {
					t.Fatalf("systemd got %q, want %q", got, step.want)
				}
			}
		})
	}
}

// Without NOTIFY_SOCKET (not under systemd) every call is a silent no-op.
func TestNotifyUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	for _, f := range []func() error{Ready, Stopping, Watchdog} {
		if err := f(); err != nil {
			t.Fatalf("without NOTIFY_SOCKET: %v", err)
		}
	}
}

func TestNotifyErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative/notify")
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "neither a path") {
		t.Fatalf("relative NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if err := Ready(); err == nil {
		t.Fatal("a socket nobody listens on: no error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok, err   bool
	}{
		{usec: "", want: 0},
		{usec: "30000000", want: 30 * time.Second, ok: true},
		{usec: "30000000", pid: self, want: 30 * time.Second, ok: true},
		{usec: "30000000", pid: "1"},               // meant for another process
		{usec: "30000000", pid: "init", err: true}, // malformed pid
		{usec: "30s", err: true},                   // not microseconds
		{usec: "0", err: true},                     // systemd never sends 0
		{usec: "-5", err: true},
		{usec: "99999999999999999999", err: true},
	} {
		t.Run(tc.usec+"/"+tc.pid, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			got, ok, err := WatchdogInterval()
			if (err != nil) != tc.err || ok != tc.ok || got != tc.want {
				t.Fatalf("WatchdogInterval() = %v, %v, %v; want %v, %v, error %v", got, ok, err, tc.want, tc.ok, tc.err)
			}
		})
	}
}

// KeepAlive sends WATCHDOG=1 every half interval until its context ends.
func TestKeepAlive(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "40000") // 40 ms: a keep-alive every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- KeepAlive(ctx, func(err error) { t.Errorf("keep-alive: %v", err) }) }()
	start := time.Now()
	for range 3 {
		if got := receive(t, c); got != "WATCHDOG=1" {
			t.Fatalf("got %q", got)
		}
	}
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("3 keep-alives in %v: faster than every 20 ms", took)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KeepAlive did not return after its context ended")
	}
}

// Without a watchdog, KeepAlive returns at once.
func TestKeepAliveWithoutWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	if err := KeepAlive(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WATCHDOG_USEC", "soon")
	if err := KeepAlive(context.Background(), nil); err == nil {
		t.Fatal("malformed WATCHDOG_USEC: no error")
	}
}
