package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// secretScan looks for known secret values (passwords, S3 secret keys, private keys) in what
// agents write: their logs, what they publish, their data directory. Every fleet has one:
// the in-process agents of every integration test log through it (at debug level, whatever
// the test shows), and when the test ends their logs, the output of every agent process and
// every MQTT message the fleet's client saw are checked (fleet.checkSecrets).
type secretScan struct {
	mu      sync.Mutex
	secrets map[string]string // needle -> what it is
	found   []string
}

func newSecretScan() *secretScan { return &secretScan{secrets: map[string]string{}} }

// add registers a secret value, and its base64 forms, under a name for the report.
func (s *secretScan) add(name, value string) {
	if value == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[value] = name
	s.secrets[base64.StdEncoding.EncodeToString([]byte(value))] = name + " (base64)"
}

// addPEMFile registers the key material of a PEM file: every line of its base64 body.
func (s *secretScan) addPEMFile(t testing.TB, name, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s is not PEM", path)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			s.add(name+" (a line of its PEM)", line)
		}
	}
}

// scan records every secret found in data, saying where it was.
func (s *secretScan) scan(where string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for needle, name := range s.secrets {
		if i := bytes.Index(data, []byte(needle)); i >= 0 {
			from, to := max(0, i-80), min(len(data), i+len(needle)+40)
			s.found = append(s.found, fmt.Sprintf("%s in %s: …%q…", name, where, data[from:to]))
		}
	}
}

// check fails t with every secret found so far.
func (s *secretScan) check(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.found {
		t.Errorf("secret leaked: %s", f)
	}
}

// scanWriter is a zerolog.LevelWriter that scans every line and passes the lines of level
// at least show to w.
type scanWriter struct {
	s     *secretScan
	where string
	w     io.Writer
	show  zerolog.Level
}

func (w scanWriter) Write(p []byte) (int, error) { return w.WriteLevel(zerolog.NoLevel, p) }

func (w scanWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	w.s.scan(w.where, p)
	if l >= w.show || l == zerolog.NoLevel {
		return w.w.Write(p)
	}
	return len(p), nil
}

// agentLogger is the logger of an in-process agent under test: debug level, scanned for
// secrets, and info and above in the test's log.
func (f *fleet) agentLogger(cfg *config.Config) zerolog.Logger {
	w := scanWriter{s: f.secrets, where: "the log of " + cfg.DeviceID, w: zerolog.NewTestWriter(f.t), show: zerolog.InfoLevel}
	return zerolog.New(w).Level(zerolog.DebugLevel).With().Str("device", cfg.DeviceID).Logger()
}

// checkSecrets scans every MQTT message the fleet's client saw and fails the test with each
// secret found there or in an agent's log. newFleetWith runs it when the test ends, after the
// agents have stopped.
func (f *fleet) checkSecrets() {
	f.mu.Lock()
	for topic, msgs := range f.msgs {
		for _, m := range msgs {
			f.secrets.scan("a message on "+topic, m)
		}
	}
	procs := f.procs
	f.mu.Unlock()
	for _, p := range procs {
		f.secrets.scan("the output of "+p.Name(), []byte(p.Output()))
	}
	f.secrets.check(f.t)
}

// TestNoSecretsInOutput runs wasmfleet-agent at debug level with every secret a device has:
// an MQTT password (from password_file) for a TLS broker that demands a client certificate,
// the certificate's private key, and S3 credentials (secret_key_file) for an https bucket.
// It goes through the paths that report errors, where a secret is most likely to slip out:
// --check, an install, readings, a release missing from the bucket, a broker restart, and a
// second run with a wrong password and a wrong S3 secret key (both also secrets). Then it
// looks for every secret in all the agent wrote: its output (stdout and stderr) of every
// run, every MQTT message the broker passed on, and every file in its data directory but
// the compile cache and its key.
func TestNoSecretsInOutput(t *testing.T) {
	const device, group = "pi-tls", "vault"
	bin := buildAgent(t)
	pki := testenv.NewPKI(t)
	f := newFleetWith(t, pki)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	ref := f.publishRelease(manifest, wasm)

	cfg := f.agentConfig(device, group)
	cfg.MQTT.Brokers = []string{f.mq.TLSURL()}
	cfg.MQTT.CAFile, cfg.MQTT.CertFile, cfg.MQTT.KeyFile = pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile
	cfg.MQTT.Username = device
	cfg.S3.Insecure, cfg.S3.CAFile = false, pki.CAFile
	secretFile := func(name, value string) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg.MQTT.Password, cfg.MQTT.PasswordFile = "", secretFile("mqtt-password", "device-pw")
	cfg.S3.SecretKey, cfg.S3.SecretKeyFile = "", secretFile("s3-secret", f.readSec)
	config := writeAgentYAML(t, cfg)
	const wrongPassword, wrongSecret = "wrong-mqtt-password-7f3a", "wrong-s3-secret-key-9c1e5d"
	f.secrets.add("a wrong MQTT password", wrongPassword)
	f.secrets.add("a wrong S3 secret key", wrongSecret)

	run := func(name string, args ...string) *testenv.Process {
		return f.startAgentProcessWith(testenv.ProcessOptions{Name: name, Path: bin, Args: args})
	}
	check := run("agent --check", "--config", config, "--check")
	<-check.Done()
	if check.Err() != nil || !strings.Contains(check.Output(), "[redacted]") {
		t.Fatalf("--check: %v\n%s", check.Err(), check.Output())
	}

	agent := run("agent", "--config", config)
	f.publishDesired(f.desiredDoc(group, everyone(ref, "r1")))
	f.waitEvent(device, report.EventActivated, "1.0.0")
	alerts := "alerts/" + device + "/temperature"
	f.publishRaw("sensors/"+device+"/temperature", []byte(`{"value": 40}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages(alerts)) == 1 }, func() string { return "an alert" })
	// A release that is not in the bucket: a failed install, reported.
	missing := ref
	missing.Version = "1.0.1"
	f.publishDesired(f.desiredDoc(group, everyone(missing, "r2")))
	f.waitEvent(device, report.EventFailed, "1.0.1")
	// The broker goes and comes back.
	f.mq.Stop()
	f.mq.Start()
	f.waitStatus(device, func(s *report.Status) bool { return s.Online && time.Since(s.Time) < 2*time.Second }, "online after the broker restart")
	if err := agent.Stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}

	// The same device with a wrong password and a wrong S3 secret key.
	bad := *cfg
	bad.MQTT.PasswordFile = secretFile("mqtt-password-wrong", wrongPassword)
	bad.S3.SecretKeyFile = secretFile("s3-secret-wrong", wrongSecret)
	badConfig := writeAgentYAML(t, &bad)
	wrong := run("agent (wrong credentials)", "--config", badConfig)
	waitFor(t, 20*time.Second, func() bool {
		out := wrong.Output()
		return strings.Contains(out, `"message":"mqtt connect failed"`) && strings.Contains(out, "SignatureDoesNotMatch")
	}, func() string { return "the refused connection and the refused S3 request in the log" })
	if err := wrong.Stop(); err != nil {
		t.Fatalf("agent with wrong credentials: %v", err)
	}

	scanned := 0
	err := filepath.WalkDir(cfg.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(cfg.DataDir, path)
		switch {
		case rel == "cache" && d.IsDir():
			return filepath.SkipDir // the sandbox's sealed code
		case rel == "cache.key":
			return nil // the device's own key that seals it: not one of the secrets given
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f.secrets.scan(filepath.Join("data_dir", rel), b)
			scanned++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The outputs and MQTT messages are scanned when the test ends (newFleetWith).
	t.Logf("%d secrets (and their base64) looked for in %d process outputs (%d bytes), %d MQTT messages, %d files of the data directory",
		len(f.secrets.secrets)/2, len(f.procs), outputBytes(f.procs), f.messageCount(), scanned)
}

func outputBytes(ps []*testenv.Process) (n int) {
	for _, p := range ps {
		n += len(p.Output())
	}
	return n
}

// messageCount is how many MQTT messages the fleet's client has seen.
func (f *fleet) messageCount() (n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		n += len(m)
	}
	return n
}

// TestSecretScanFinds: the scan finds a secret as it is and base64-encoded, in a log line
// and in a message, and passes the lines it should to the test log.
func TestSecretScanFinds(t *testing.T) {
	s := newSecretScan()
	s.add("the password", "hunter2-very-secret")
	var shown bytes.Buffer
	log := zerolog.New(scanWriter{s: s, where: "a log", w: &shown, show: zerolog.InfoLevel}).Level(zerolog.DebugLevel)
	log.Debug().Str("auth", "hunter2-very-secret").Msg("connecting")
	log.Info().Msg("nothing to see")
	s.scan("a message", []byte(`{"x":"`+base64.StdEncoding.EncodeToString([]byte("hunter2-very-secret"))+`"}`))
	if len(s.found) != 2 || !strings.Contains(s.found[0], "the password in a log") || !strings.Contains(s.found[1], "(base64) in a message") {
		t.Fatalf("found %q", s.found)
	}
	if strings.Contains(shown.String(), "connecting") || !strings.Contains(shown.String(), "nothing to see") {
		t.Fatalf("shown %q: want the info line only", shown.String())
	}
}
