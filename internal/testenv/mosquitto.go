package testenv

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MosquittoOptions configures StartMosquitto. The zero value (or nil) is one plain listener
// that lets anonymous clients in.
type MosquittoOptions struct {
	// Users maps user names to passwords. When set, every listener requires one of them
	// (allow_anonymous false); when empty, anonymous clients are allowed.
	Users map[string]string

	// PKI, when set, adds a TLS listener (TLSURL) with the PKI's server certificate.
	PKI *PKI

	// RequireClientCert makes the TLS listener demand a client certificate signed by the
	// PKI's CA (mTLS). Needs PKI.
	RequireClientCert bool

	// Config is appended to the generated mosquitto.conf verbatim (global options only:
	// it follows the listeners, so listener options would attach to the last one).
	Config string
}

// Mosquitto is a running (or stopped) Mosquitto broker owned by one test.
type Mosquitto struct {
	Dir string // config, password file, persistence (data/) and mosquitto.log

	port, tlsPort int
	srv           *server
}

// StartMosquitto writes a mosquitto.conf in a new t.TempDir, starts the broker on free
// loopback ports and waits until every listener accepts connections. The broker is killed
// when the test ends.
func StartMosquitto(t testing.TB, opts *MosquittoOptions) *Mosquitto {
	t.Helper()
	if opts == nil {
		opts = &MosquittoOptions{}
	}
	if opts.RequireClientCert && opts.PKI == nil {
		t.Fatalf("testenv: MosquittoOptions.RequireClientCert needs a PKI")
	}
	bin := findBinary(t, "mosquitto", "/usr/sbin")
	ports := freePorts(t, 2)
	m := &Mosquitto{Dir: t.TempDir(), port: ports[0]}
	if opts.PKI != nil {
		m.tlsPort = ports[1]
	}
	conf := filepath.Join(m.Dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(m.config(t, opts)), 0o600); err != nil {
		t.Fatalf("testenv: write %s: %v", conf, err)
	}
	if m.tlsPort == 0 {
		ports = ports[:1]
	}
	m.srv = &server{
		t:       t,
		name:    "mosquitto",
		path:    bin,
		args:    []string{"-c", conf},
		logFile: filepath.Join(m.Dir, "mosquitto.log"),
		ready:   dialReady(ports...),
	}
	t.Cleanup(m.srv.cleanup)
	m.srv.start()
	return m
}

func (m *Mosquitto) config(t testing.TB, opts *MosquittoOptions) string {
	t.Helper()
	data := filepath.Join(m.Dir, "data") + "/"
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# written by internal/testenv")
	// Mosquitto started as root switches to the user "mosquitto", which could then not read
	// the temp dir. Naming the current user keeps it; a non-root broker ignores the option.
	if os.Geteuid() == 0 {
		if u, err := user.Current(); err == nil {
			line("user %s", u.Username)
		}
	}
	line("per_listener_settings false")
	if len(opts.Users) > 0 {
		pw := filepath.Join(m.Dir, "passwd")
		if err := os.WriteFile(pw, []byte(passwordFile(t, opts.Users)), 0o600); err != nil {
			t.Fatalf("testenv: write %s: %v", pw, err)
		}
		line("allow_anonymous false")
		line("password_file %s", pw)
	} else {
		line("allow_anonymous true")
	}
	// The database is written on a clean exit, and after every change (autosave_on_changes
	// counts changes, not seconds), so Stop keeps everything and Kill nearly everything.
	line("persistence true")
	line("persistence_location %s", data)
	line("autosave_on_changes true")
	line("autosave_interval 1")
	line("max_queued_messages 100000")
	line("max_queued_bytes 0")
	line("log_dest stderr")
	line("log_type error")
	line("log_type warning")
	line("log_type notice")
	line("log_type information")
	line("connection_messages true")
	line("log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S")
	line("")
	line("listener %d 127.0.0.1", m.port)
	if opts.PKI != nil {
		line("")
		line("listener %d 127.0.0.1", m.tlsPort)
		line("cafile %s", opts.PKI.CAFile)
		line("certfile %s", opts.PKI.ServerCertFile)
		line("keyfile %s", opts.PKI.ServerKeyFile)
		line("require_certificate %t", opts.RequireClientCert)
	}
	if opts.Config != "" {
		line("")
		line("%s", opts.Config)
	}
	return b.String()
}

// passwordFile renders users in Mosquitto 2.0's password file format, the one
// mosquitto_passwd writes: user:$7$iterations$base64(salt)$base64(PBKDF2-HMAC-SHA512).
func passwordFile(t testing.TB, users map[string]string) string {
	t.Helper()
	const iterations = 101 // mosquitto_passwd's default
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(users)) {
		salt := make([]byte, 12)
		if _, err := rand.Read(salt); err != nil {
			t.Fatalf("testenv: salt: %v", err)
		}
		hash, err := pbkdf2.Key(sha512.New, users[name], salt, iterations, sha512.Size)
		if err != nil {
			t.Fatalf("testenv: hash password: %v", err)
		}
		fmt.Fprintf(&b, "%s:$7$%d$%s$%s\n", name, iterations,
			base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(hash))
	}
	return b.String()
}

// URL is the plain listener, tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string { return "tcp://" + hostPort(m.port) }

// TLSURL is the TLS listener, ssl://127.0.0.1:PORT, or "" without a PKI.
func (m *Mosquitto) TLSURL() string {
	if m.tlsPort == 0 {
		return ""
	}
	return "ssl://" + hostPort(m.tlsPort)
}

// Addr is the plain listener's host:port.
func (m *Mosquitto) Addr() string { return hostPort(m.port) }

// Stop sends SIGTERM (Mosquitto then saves its database) and waits for the exit.
func (m *Mosquitto) Stop() { m.srv.t.Helper(); m.srv.stop() }

// Kill sends SIGKILL and waits for the exit: no goodbye to clients, no final save. Mosquitto
// saves a change at the end of the event-loop iteration that handled it, after it has sent the
// PUBACK, so a message killed right after its PUBACK may be lost; once the broker has answered
// any later request (a SUBACK, a PINGRESP) on any connection, it is on disk.
func (m *Mosquitto) Kill() { m.srv.kill() }

// Start starts a stopped broker again on the same ports with the same configuration and
// data, and waits until it accepts connections.
func (m *Mosquitto) Start() { m.srv.t.Helper(); m.srv.start() }

// Running reports whether the broker process is alive.
func (m *Mosquitto) Running() bool { return m.srv.running() }

// Pause stops the broker process (SIGSTOP) without closing anything: its clients stay
// connected to a broker that answers nothing, as to one swapping or stalled on its disk.
// Resume continues it.
func (m *Mosquitto) Pause() {
	m.srv.t.Helper()
	if err := m.srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		m.srv.t.Fatalf("testenv: pause mosquitto: %v", err)
	}
}

// Resume continues a paused broker (SIGCONT).
func (m *Mosquitto) Resume() {
	m.srv.t.Helper()
	if err := m.srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		m.srv.t.Fatalf("testenv: resume mosquitto: %v", err)
	}
}

// CPU returns the user + system time the running broker process has used.
func (m *Mosquitto) CPU() (time.Duration, error) {
	if !m.Running() {
		return 0, fmt.Errorf("mosquitto is not running")
	}
	return ProcessCPU(m.srv.cmd.Process.Pid)
}

// LogTail is the end of mosquitto.log, for failure messages.
func (m *Mosquitto) LogTail() string { return m.srv.tail() }
