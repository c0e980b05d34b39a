package systemd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// trustFile writes a signed trust file with fresh keys, enough for the agent to start.
func trustFile(t *testing.T, path string) {
	t.Helper()
	tf := &signing.TrustFile{Version: 1, Expires: time.Now().Add(24 * time.Hour), Keys: map[string]signing.TrustKey{}}
	var root signature.SignerVerifier
	role := func() signing.Role {
		priv, err := keys.Generate(keys.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		s, err := keys.Signer(priv)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		id, k, err := signing.NewTrustKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		tf.Keys[id] = k
		root = s
		return signing.Role{KeyIDs: []string{id}, Threshold: 1}
	}
	tf.Roles.Release, tf.Roles.Rollout, tf.Roles.Root = role(), role(), role()
	env, err := signing.SignTrust(context.Background(), tf, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, env, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAgentNotifies runs the wasmfleet-agent binary as systemd would start it for
// wasmfleet-agent.service (Type=notify, WatchdogSec): $NOTIFY_SOCKET names a unixgram
// socket the test listens on, $WATCHDOG_USEC and $WATCHDOG_PID ask for keep-alives. It must
// say READY=1 once started, WATCHDOG=1 at least every half interval, and STOPPING=1 on
// SIGTERM before it exits 0. No broker or bucket is needed: the agent is ready before it
// connects, and keeps trying.
func TestAgentNotifies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found on PATH: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wasmfleet-agent")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/wasmfleet/wasmfleet/cmd/wasmfleet-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build wasmfleet-agent: %v\n%s", err, out)
	}
	trustFile(t, filepath.Join(dir, "root.json"))
	config := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf(`device_id: pi-notify
groups: [lab]
mqtt: {brokers: ["tcp://127.0.0.1:1"]}
s3: {endpoint: "127.0.0.1:1", bucket: wasmfleet, access_key: reader, secret_key: nothing, insecure: true}
trust_root: %q
data_dir: %q
`, filepath.Join(dir, "root.json"), filepath.Join(dir, "data"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type note struct {
		msg string
		at  time.Time
	}
	notes := make(chan note, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- note{string(buf[:n]), time.Now()}
		}
	}()

	const watchdog = 400 * time.Millisecond
	cmd := exec.Command(bin, "--config", config)
	var out strings.Builder
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stderr = cmd.Stdout
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "WASMFLEET_") && !strings.HasPrefix(e, "NOTIFY_SOCKET=") && !strings.HasPrefix(e, "WATCHDOG_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	// systemd sets WATCHDOG_PID to the service's pid; the test cannot know it before the
	// start, so it leaves it unset, which sd_notify(3) also accepts.
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("agent output:\n%s", out.String())
			mu.Unlock()
		}
	}()

	next := func(what string) note {
		t.Helper()
		select {
		case n, ok := <-notes:
			if !ok {
				t.Fatalf("waiting for %s: the socket closed", what)
			}
			return n
		case err := <-exited:
			t.Fatalf("waiting for %s: the agent exited: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10s", what)
		}
		return note{}
	}
	ready := next("READY=1")
	if ready.msg != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", ready.msg)
	}
	last := ready.at
	for i := range 4 {
		n := next("WATCHDOG=1")
		if n.msg != "WATCHDOG=1" {
			t.Fatalf("notification %q, want WATCHDOG=1", n.msg)
		}
		// Every half interval; a gap of a whole interval is what makes systemd kill it.
		if gap := n.at.Sub(last); i > 0 && gap >= watchdog {
			t.Errorf("keep-alive %d came %v after the one before: systemd (WatchdogSec=%v) would have killed the agent", i, gap, watchdog)
		}
		last = n.at
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		n := next("STOPPING=1")
		if n.msg == "STOPPING=1" {
			break
		}
		if n.msg != "WATCHDOG=1" {
			t.Fatalf("notification %q while stopping", n.msg)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not exit within 10s of SIGTERM")
	}
	t.Logf("READY=1 %v after the start", ready.at.Sub(start).Round(time.Millisecond))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
