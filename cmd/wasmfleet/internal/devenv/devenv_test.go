package devenv_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/cli"
	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// committedExamples are the example handlers whose .wasm is in the repository (the Go one
// is built by make, so the test leaves it out: its manifest alone checks the skipping).
var committedExamples = []string{"c-to-f", "echo", "threshold-alert"}

// examplesDir copies the committed examples, and moving-average's manifest and main without
// its module, to a temporary directory.
func examplesDir(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "..", "..", "..", "modules", "examples")
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range committedExamples {
		copyFile(filepath.Join(src, name, "manifest.yaml"), filepath.Join(dst, name, "manifest.yaml"))
		copyFile(filepath.Join(src, name, name+".wasm"), filepath.Join(dst, name, name+".wasm"))
	}
	for _, f := range []string{"manifest.yaml", "main_wasip1.go"} {
		copyFile(filepath.Join(src, "moving-average", f), filepath.Join(dst, "moving-average", f))
	}
	return dst
}

// logBuffer collects the environment's log lines (zerolog JSON) for the test to search.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start opens and starts a dev environment in dir with 3 agents, quick waves and frequent
// sample events; Close runs at the end of the test if the test has not closed it.
func start(t *testing.T, dir, examples string) (*devenv.Env, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	e, err := devenv.Open(context.Background(), devenv.Config{Dir: dir, Agents: 3, Examples: examples,
		Soak: 500 * time.Millisecond, EventInterval: 200 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			e.Close()
		}
	})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, logs
}

// observer records every message on the broker.
type observer struct {
	mu   sync.Mutex
	msgs map[string][][]byte
	c    mqtt.Client
}

func observe(t *testing.T, info devenv.Info) *observer {
	t.Helper()
	o := &observer{msgs: map[string][][]byte{}}
	opts := mqtt.NewClientOptions().AddBroker(info.Broker).SetClientID("devenv-test-observer").
		SetUsername(info.MQTTUsername).SetPassword(info.MQTTPassword).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			o.mu.Lock()
			o.msgs[m.Topic()] = append(o.msgs[m.Topic()], slices.Clone(m.Payload()))
			o.mu.Unlock()
		}).
		SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("#", 1, nil) })
	o.c = mqtt.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	return o
}

func (o *observer) last(topic string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.msgs[topic]
	if len(m) == 0 {
		return nil
	}
	return m[len(m)-1]
}

func (o *observer) count(topic string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs[topic])
}

// status is a device's last status, nil before the first.
func (o *observer) status(t *testing.T, device string) *report.Status {
	b := o.last(report.Topics{}.Status(device))
	if b == nil {
		return nil
	}
	s, err := report.ParseStatus(b)
	if err != nil {
		t.Fatalf("%s published a malformed status: %v", device, err)
	}
	return s
}

// runs reports whether the device's last status has each module at its version, active
// and online, reported after since.
func (o *observer) runs(t *testing.T, device string, since time.Time, want map[string]string) bool {
	s := o.status(t, device)
	if s == nil || !s.Online || s.Time.Before(since) {
		return false
	}
	for name, version := range want {
		i := slices.IndexFunc(s.Modules, func(m report.ModuleStatus) bool { return m.Name == name })
		if i < 0 || s.Modules[i].Version != version || s.Modules[i].State != report.StateActive {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSettled(t *testing.T, e *devenv.Env, timeout time.Duration, logs *logBuffer) {
	t.Helper()
	select {
	case <-e.Settled():
	case <-time.After(timeout):
		t.Fatalf("the examples were not rolled out within %v; log:\n%s", timeout, logs)
	}
}

// auditTrail is each rollout's transitions, in step order, from the audit records.
func auditTrail(t *testing.T, info devenv.Info) map[string][]rollout.AuditRecord {
	t.Helper()
	st, err := controller.OpenStore(publish.Config{Endpoint: info.S3Endpoint, Bucket: info.Bucket, Region: info.Region,
		AccessKey: info.S3AccessKey, SecretKey: info.S3SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, err := st.List(ctx, objects.AuditPrefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]rollout.AuditRecord{}
	for _, k := range keys {
		b, _, err := st.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		out[rec.Release] = append(out[rec.Release], rec)
	}
	for _, recs := range out {
		sort.Slice(recs, func(i, j int) bool { return recs[i].Step < recs[j].Step })
	}
	return out
}

// mosquittoSub runs Debian's mosquitto_sub against the broker and returns its output lines
// ("topic payload") as they come.
func mosquittoSub(t *testing.T, info devenv.Info, topics ...string) <-chan string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatalf("mosquitto_sub not found (Debian's mosquitto-clients; make deps installs it): %v", err)
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(info.Broker, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-h", host, "-p", port, "-u", info.MQTTUsername, "-P", info.MQTTPassword, "-v", "-i", "devenv-test-mosquitto-sub"}
	for _, tp := range topics {
		args = append(args, "-t", tp)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test has what it needs
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto_sub stderr: %s", stderr.String())
		}
	})
	return lines
}

// runCLI runs the wasmfleet CLI in this process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("wasmfleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

// clearFleetEnv unsets every WASMFLEET_ S3 and MQTT variable, so that the CLI falls back to
// the dev environment as on a fresh shell.
func clearFleetEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "WASMFLEET_") {
			t.Setenv(name, "")
		}
	}
}

// TestDevEnvironment runs `wasmfleet dev` as the CLI does, in a temporary directory: three
// agents come online through the embedded broker; the example handlers are published and
// installed on them by rollouts that advance wave by wave; sample events make the handlers
// publish; Debian's mosquitto_sub sees that traffic; the CLI, run beside the directory
// without flags, signs with the dev keys, publishes to the embedded S3, rolls out and lists
// devices through the dev environment; a real wasmfleet-agent process joins with the
// agent.yaml it writes; a second run in the same directory reuses the keys, the bucket and
// the agents' modules and converges without publishing or rolling out anything.
func TestDevEnvironment(t *testing.T) {
	clearFleetEnv(t)
	base := t.TempDir()
	dir := filepath.Join(base, devenv.DefaultDir)
	examples := examplesDir(t)
	began := time.Now()

	e, logs := start(t, dir, examples)
	info := e.Info()
	if !info.Created || len(info.Devices) != 3 {
		t.Fatalf("info: %+v", info)
	}
	t.Logf("started in %v: dashboard %s, broker %s, s3 %s", time.Since(began), info.Dashboard, info.Broker, info.S3Endpoint)
	obs := observe(t, info)
	sub := mosquittoSub(t, info, "wasmfleet/devices/+/status", "alerts/#", "converted/#", "echo/#")

	// A second environment cannot take the directory while this one runs.
	if _, err := devenv.Open(context.Background(), devenv.Config{Dir: dir}); !errors.Is(err, devenv.ErrBusy) {
		t.Errorf("second Open of a directory in use: %v, want ErrBusy", err)
	}
	if !devenv.Running(dir) {
		t.Error("Running says no while the environment runs")
	}

	t.Run("agents online", func(t *testing.T) {
		waitFor(t, 20*time.Second, func() bool {
			for _, d := range info.Devices {
				if s := obs.status(t, d); s == nil || !s.Online || !slices.Contains(s.Groups, devenv.DefaultGroup) {
					return false
				}
			}
			return true
		}, func() string { return "every agent to report online in group dev" })
	})

	t.Run("status page", func(t *testing.T) {
		resp, err := http.Get(info.Dashboard)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "dev-1") {
			t.Errorf("GET %s: %d\n%s", info.Dashboard, resp.StatusCode, body)
		}
	})

	want := map[string]string{"c-to-f": "1.0.0", "echo": "1.0.0", "threshold-alert": "1.0.0"}
	t.Run("rollouts advance and install the examples", func(t *testing.T) {
		waitSettled(t, e, 3*time.Minute, logs)
		t.Logf("examples rolled out %v after the start", time.Since(began))
		if !strings.Contains(logs.String(), "example skipped") || !strings.Contains(logs.String(), "make go-modules") {
			t.Error("moving-average without its .wasm was not reported as skipped with what to do")
		}
		trail := auditTrail(t, info)
		for name, version := range want {
			recs := trail[name+"@"+version]
			var waves []int
			for _, r := range recs {
				if r.To == rollout.Running {
					waves = append(waves, r.Wave)
				}
			}
			if !slices.Equal(waves, []int{0, 1, 2}) || len(recs) == 0 || recs[len(recs)-1].To != rollout.Completed {
				t.Errorf("%s@%s: waves opened %v, last transition %+v; want waves 0, 1, 2 (from 0) and completed", name, version, waves, recs)
			}
		}
		for _, d := range info.Devices {
			waitFor(t, 20*time.Second, func() bool { return obs.runs(t, d, began, want) },
				func() string {
					return fmt.Sprintf("%s to run %v; last status %s", d, want, obs.last(report.Topics{}.Status(d)))
				})
		}
		if st := e.Stats(); st.Published != 3 || st.RolloutsStarted != 3 {
			t.Errorf("stats %+v: want 3 published, 3 rollouts", st)
		}
	})

	t.Run("sample events produce handler output", func(t *testing.T) {
		for _, d := range info.Devices {
			for _, topic := range []string{"converted/" + d, "echo/" + d, "alerts/" + d + "/temperature"} {
				waitFor(t, 30*time.Second, func() bool { return obs.count(topic) > 0 },
					func() string { return "a message on " + topic })
			}
		}
		if b := obs.last("converted/dev-1"); !bytes.Contains(b, []byte(`"fahrenheit"`)) {
			t.Errorf("converted/dev-1: %s", b)
		}
	})

	t.Run("mosquitto_sub sees the traffic", func(t *testing.T) {
		seen := map[string]bool{}
		deadline := time.After(30 * time.Second)
		for !(seen["status"] && seen["alerts"] && seen["converted"] && seen["echo"]) {
			select {
			case line, ok := <-sub:
				if !ok {
					t.Fatalf("mosquitto_sub ended; saw %v", seen)
				}
				topic, _, _ := strings.Cut(line, " ")
				switch {
				case strings.HasSuffix(topic, "/status"):
					seen["status"] = true
				default:
					seen[strings.SplitN(topic, "/", 2)[0]] = true
				}
			case <-deadline:
				t.Fatalf("mosquitto_sub saw only %v", seen)
			}
		}
	})

	var cliRollout string
	t.Run("the CLI uses the dev environment", func(t *testing.T) {
		t.Chdir(base)
		// Sign echo 1.0.1 with the dev release key, as a developer would.
		m, err := os.ReadFile(filepath.Join(examples, "echo", "manifest.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		manifest := filepath.Join(t.TempDir(), "manifest.yaml")
		if err := os.WriteFile(manifest, bytes.Replace(m, []byte("version: 1.0.0"), []byte("version: 1.0.1"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		wasm := filepath.Join(examples, "echo", "echo.wasm")
		rel := filepath.Join(t.TempDir(), "release.dsse.json")
		mustCLI(t, "sign", "--key", info.ReleaseKey, "--password-file", info.PasswordFile, "--manifest", manifest, wasm, "-o", rel)

		out, errs := mustCLI(t, "publish", "--quiet", rel, wasm)
		if !strings.Contains(out, "published echo 1.0.1") || !strings.Contains(errs, "using the dev environment") {
			t.Errorf("publish: stdout %q stderr %q", out, errs)
		}
		if strings.Contains(errs, "not running") {
			t.Errorf("publish says the running environment is not running: %q", errs)
		}
		out, _ = mustCLI(t, "releases", "echo")
		if !strings.Contains(out, "1.0.1") || !strings.Contains(out, "1.0.0") {
			t.Errorf("releases echo:\n%s", out)
		}
		out, _ = mustCLI(t, "rollout", "start", "--release", "echo@1.0.1", "--group", "dev", "--waves", "50,100",
			"--soak", "500ms", "--min-devices", "1")
		if !strings.Contains(out, "echo 1.0.1 over 1.0.0") {
			t.Errorf("rollout start:\n%s", out)
		}
		cliRollout = strings.TrimSuffix(strings.Fields(strings.TrimPrefix(out, "started rollout "))[0], ":")
		want["echo"] = "1.0.1"
		since := time.Now()
		for _, d := range info.Devices {
			waitFor(t, 60*time.Second, func() bool { return obs.runs(t, d, since, want) },
				func() string {
					return fmt.Sprintf("%s to run echo 1.0.1; last status %s", d, obs.last(report.Topics{}.Status(d)))
				})
		}
		out, _ = mustCLI(t, "rollout", "status", cliRollout, "--watch", "--interval", "200ms", "--live=false")
		if !strings.Contains(out, "completed") {
			t.Errorf("rollout status:\n%s", out)
		}
		out, _ = mustCLI(t, "devices", "--group", "dev", "--idle", "300ms")
		for _, d := range info.Devices {
			if !strings.Contains(out, d) || !strings.Contains(out, "echo@1.0.1") {
				t.Errorf("devices:\n%s", out)
			}
		}
	})

	t.Run("a real wasmfleet-agent joins with agent.yaml", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "wasmfleet-agent")
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/wasmfleet-agent")
		build.Dir = filepath.Join("..", "..", "..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "--config", info.AgentConfig, "--device-id", "ext-1", "--data-dir", filepath.Join(t.TempDir(), "ext-1"))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		since := time.Now()
		waitFor(t, 60*time.Second, func() bool { return obs.runs(t, "ext-1", since, want) },
			func() string {
				return fmt.Sprintf("ext-1 to run %v; last status %s", want, obs.last(report.Topics{}.Status("ext-1")))
			})
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("wasmfleet-agent: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("wasmfleet-agent did not stop on SIGTERM\n%s", out.String())
		}
	})

	keysBefore := readDir(t, filepath.Join(dir, "keys"))
	rolloutsBefore := rolloutIDs(t, e)
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if devenv.Running(dir) {
		t.Error("Running says yes after Close")
	}
	obs.c.Disconnect(100)

	t.Run("a second run reuses the directory and converges without publishing", func(t *testing.T) {
		restart := time.Now()
		e2, logs2 := start(t, dir, examples)
		info2 := e2.Info()
		if info2.Created || info2.Token != info.Token || info2.S3SecretKey != info.S3SecretKey || info2.MQTTPassword != info.MQTTPassword {
			t.Errorf("second run: created %v, or new credentials", info2.Created)
		}
		if !maps.Equal(readDir(t, filepath.Join(dir, "keys")), keysBefore) {
			t.Error("the keys changed")
		}
		obs2 := observe(t, info2)
		waitSettled(t, e2, time.Minute, logs2)
		for _, d := range info2.Devices {
			waitFor(t, 30*time.Second, func() bool { return obs2.runs(t, d, restart, want) },
				func() string {
					return fmt.Sprintf("%s to run %v again; last status %s", d, want, obs2.last(report.Topics{}.Status(d)))
				})
		}
		if st := e2.Stats(); st.Published != 0 || st.RolloutsStarted != 0 || st.ReleasePuts != 0 {
			t.Errorf("the second run published or rolled out: %+v", st)
		}
		if after := rolloutIDs(t, e2); !slices.Equal(after, rolloutsBefore) {
			t.Errorf("rollouts before %v, after %v", rolloutsBefore, after)
		}
		// The group's retained desired state came back from the file: a new observer gets it.
		if obs2.last(report.Topics{}.GroupDesired("dev")) == nil {
			waitFor(t, 5*time.Second, func() bool { return obs2.last(report.Topics{}.GroupDesired("dev")) != nil },
				func() string { return "the retained desired state of group dev" })
		}
		t.Logf("second run converged %v after its start", time.Since(restart))
	})
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// rolloutIDs lists the rollouts in the environment's bucket.
func rolloutIDs(t *testing.T, e *devenv.Env) []string {
	t.Helper()
	info := e.Info()
	st, err := controller.OpenStore(publish.Config{Endpoint: info.S3Endpoint, Bucket: info.Bucket, Region: info.Region,
		AccessKey: info.S3AccessKey, SecretKey: info.S3SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.List(context.Background(), objects.RolloutsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// Close stops the environment promptly and without an error while clients it does not
// know hold connections to its servers: one to the S3 store that never sent a request (for
// which net/http's Shutdown waits 5 s), and one to the dashboard in the middle of a request
// line. CI once saw `wasmfleet dev --for 1s` fail with "s3 store: context deadline exceeded".
func TestCloseWithClientsLeftOpen(t *testing.T) {
	clearFleetEnv(t)
	dir := filepath.Join(t.TempDir(), devenv.DefaultDir)
	e, err := devenv.Open(context.Background(), devenv.Config{Dir: dir, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		e.Close()
		t.Fatal(err)
	}
	info := e.Info()
	silent, err := net.Dial("tcp", info.S3Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	u, err := url.Parse(info.Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	partial, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer partial.Close()
	if _, err := partial.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := e.Close(); err != nil {
		t.Fatalf("Close with clients left open: %v", err)
	}
	if took := time.Since(began); took > 4500*time.Millisecond {
		t.Errorf("Close took %v", took)
	}
}
