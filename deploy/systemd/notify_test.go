package systemd

import (
	"crypto"
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

	"github.com/wasmfleet/wasmfleet/signing/keys"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// trustFile writes a signed trust file with fresh keys, enough for the agent and the
// controller to start, and returns the private key of its rollout role.
func trustFile(t *testing.T, path string) (rolloutKey crypto.Signer) {
	t.Helper()
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	rollout, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	root := signingtest.NewSigner(t)
	env := signingtest.Trust(t, 1, root, signingtest.NewSigner(t), rollout)
	if err := os.WriteFile(path, env, 0o600); err != nil {
		t.Fatal(err)
	}
	return priv
}

// buildCmd builds one of the repository's commands into dir.
func buildCmd(t *testing.T, dir, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found on PATH: %v", err)
	}
	bin := filepath.Join(dir, name)
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/wasmfleet/wasmfleet/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// TestAgentNotifies runs the wasmfleet-agent binary as systemd would start it for
// wasmfleet-agent.service (Type=notify, WatchdogSec): $NOTIFY_SOCKET names a unixgram
// socket the test listens on, $WATCHDOG_USEC and $WATCHDOG_PID ask for keep-alives. It must
// say READY=1 once started, WATCHDOG=1 at least every half interval, and STOPPING=1 on
// SIGTERM before it exits 0. No broker or bucket is needed: the agent is ready before it
// connects, and keeps trying.
func TestAgentNotifies(t *testing.T) {
	dir := t.TempDir()
	bin := buildCmd(t, dir, "wasmfleet-agent")
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
	checkNotifies(t, dir, exec.Command(bin, "--config", config))
}

// TestServeNotifies does the same for `wasmfleet serve` as wasmfleet.service starts it: its
// rollout key, password and the bucket's credentials from the environment (the unit's
// EnvironmentFile), the trust file given. It is ready once keys and trust are checked and
// the dashboard listens, before the broker answers (here: never).
func TestServeNotifies(t *testing.T) {
	dir := t.TempDir()
	bin := buildCmd(t, dir, "wasmfleet")
	key := trustFile(t, filepath.Join(dir, "root.json"))
	pem, err := keys.MarshalPrivate(key, []byte("notify-test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rollout.key"), pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--rollout-key", filepath.Join(dir, "rollout.key"),
		"--trust", filepath.Join(dir, "root.json"), "--http", "127.0.0.1:0")
	cmd.Env = []string{"WASMFLEET_KEY_PASSWORD=notify-test", "WASMFLEET_S3_ENDPOINT=127.0.0.1:1",
		"WASMFLEET_S3_BUCKET=wasmfleet", "WASMFLEET_S3_ACCESS_KEY=controller", "WASMFLEET_S3_SECRET_KEY=nothing",
		"WASMFLEET_S3_INSECURE=true", "WASMFLEET_MQTT_BROKERS=tcp://127.0.0.1:1"}
	checkNotifies(t, dir, cmd)
}

// checkNotifies starts cmd (whose Env holds its WASMFLEET_* settings, if any) as systemd
// would and checks its notifications.
func checkNotifies(t *testing.T, dir string, cmd *exec.Cmd) {
	t.Helper()
	name := filepath.Base(cmd.Path)
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
	var out strings.Builder
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stderr = cmd.Stdout
	settings := cmd.Env
	cmd.Env = nil
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "WASMFLEET_") && !strings.HasPrefix(e, "NOTIFY_SOCKET=") && !strings.HasPrefix(e, "WATCHDOG_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	// systemd sets WATCHDOG_PID to the service's pid; the test cannot know it before the
	// start, so it leaves it unset, which sd_notify(3) also accepts.
	cmd.Env = append(cmd.Env, settings...)
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
			t.Logf("%s output:\n%s", name, out.String())
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
			t.Fatalf("waiting for %s: %s exited: %v", what, name, err)
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
			t.Errorf("keep-alive %d came %v after the one before: systemd (WatchdogSec=%v) would have killed %s", i, gap, watchdog, name)
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
		t.Fatalf("%s did not exit within 10s of SIGTERM", name)
	}
	t.Logf("%s: READY=1 %v after the start", name, ready.at.Sub(start).Round(time.Millisecond))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
