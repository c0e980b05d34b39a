// Package sdnotify speaks systemd's service notification protocol (sd_notify(3)) for a
// Type=notify unit: READY=1 once the service works, STOPPING=1 when it begins to stop, and
// WATCHDOG=1 keep-alives within the unit's WatchdogSec.
//
// Each message is one datagram to the unix socket named by $NOTIFY_SOCKET: a path, or an
// abstract-namespace name written with a leading '@'. When the variable is unset (not
// started by systemd, or a unit of another type) every call does nothing and returns nil,
// so a program calls these unconditionally. The package has no dependency beyond the
// standard library and holds no state: the environment is read on each call.
//
// It is not libsystemd: no file-descriptor store, no credentials passing (the sender's
// pid is checked by the kernel), no NOTIFY_SOCKET=vsock: addresses.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// The states this package sends.
const (
	ready    = "READY=1"
	stopping = "STOPPING=1"
	watchdog = "WATCHDOG=1"
)

// Ready tells systemd that start-up is finished: a Type=notify unit counts as started, and
// units ordered after it may start.
func Ready() error { return Notify(ready) }

// Stopping tells systemd that the service is beginning its shutdown.
func Stopping() error { return Notify(stopping) }

// Watchdog tells systemd that the service is alive. With WatchdogSec set, systemd kills
// and (per Restart=) restarts a service that stays silent for longer; send it every
// WatchdogInterval()/2.
func Watchdog() error { return Notify(watchdog) }

// Notify sends state, newline-separated assignments (sd_notify(3)), as one datagram to
// $NOTIFY_SOCKET. It returns nil without sending when the variable is unset or empty.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	switch name[0] {
	case '@':
		// Abstract namespace: the kernel name starts with a NUL byte, which Go's net
		// package writes for a name that starts with '@'.
	case '/':
	default:
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither a path nor an abstract (@) name", name)
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send %q: %w", state, err)
	}
	return nil
}

// WatchdogInterval returns the watchdog timeout systemd expects keep-alives within
// (WatchdogSec=, from $WATCHDOG_USEC), and false when no watchdog is set for this process:
// the variable is unset, or $WATCHDOG_PID names another process (the variables were
// inherited from a parent that systemd watches). A malformed value is an error.
func WatchdogInterval() (time.Duration, bool, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, false, nil
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, false, fmt.Errorf("sdnotify: WATCHDOG_PID %q: %w", p, err)
		}
		if pid != os.Getpid() {
			return 0, false, nil
		}
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return 0, false, fmt.Errorf("sdnotify: WATCHDOG_USEC %q is not a positive number of microseconds", usec)
	}
	const max = uint64(1<<63-1) / uint64(time.Microsecond)
	if n > max {
		return 0, false, errors.New("sdnotify: WATCHDOG_USEC is out of range")
	}
	return time.Duration(n) * time.Microsecond, true, nil
}

// KeepAlive sends WATCHDOG=1 every half of WatchdogInterval until ctx ends, and returns at
// once when no watchdog is set. A failed send is passed to onError (when not nil) and the
// next one is tried all the same: a missed keep-alive is systemd's to judge. The error
// returned is a malformed watchdog setting.
func KeepAlive(ctx context.Context, onError func(error)) error {
	every, ok, err := WatchdogInterval()
	if err != nil || !ok {
		return err
	}
	tick := time.NewTicker(every / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := Watchdog(); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}
