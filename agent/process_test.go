package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// The tests that run wasmfleet-agent as a process (restart, power cut, disk full, overload,
// soak, secrets) build it with buildAgent, describe it with a config.Config made by
// fleet.agentConfig and written by writeAgentYAML, and run it with fleet.startAgentProcess.

// buildAgent builds cmd/wasmfleet-agent into a temp dir and returns the binary's path.
func buildAgent(t *testing.T) string {
	t.Helper()
	return testenv.GoBuild(t, "github.com/wasmfleet/wasmfleet/cmd/wasmfleet-agent", nil)
}

// startAgentProcess runs bin --config config with the test's environment minus WASMFLEET_*
// variables; its output (zerolog JSON) is logged if the test fails, scanned for the fleet's
// secrets when the test ends, and it is stopped with SIGTERM then if still running.
func (f *fleet) startAgentProcess(bin, config, name string) *testenv.Process {
	f.t.Helper()
	return f.startAgentProcessWith(testenv.ProcessOptions{Name: name, Path: bin, Args: []string{"--config", config}})
}

// startAgentProcessWith is startAgentProcess with more options (FileSizeLimit, OnLine).
// o.Env is ignored.
func (f *fleet) startAgentProcessWith(o testenv.ProcessOptions) *testenv.Process {
	f.t.Helper()
	o.Env = nil
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "WASMFLEET_") {
			o.Env = append(o.Env, e)
		}
	}
	p := testenv.StartProcess(f.t, o)
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	return p
}

// writeAgentYAML writes cfg as the YAML file a wasmfleet-agent process reads, next to its
// data directory, and returns its path. It writes the settings the tests set (secrets in
// the clear, as a device's file may hold them); the rest keep their defaults. The broker
// keep-alive and connect timeout are 5 s, the log level is debug.
func writeAgentYAML(t *testing.T, cfg *config.Config) string {
	t.Helper()
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
	line("device_id: %s", cfg.DeviceID)
	line("groups: [%s]", strings.Join(cfg.Groups, ", "))
	line("mqtt:")
	line("  brokers: [%s]", quoteAll(cfg.MQTT.Brokers))
	line("  keep_alive: 5s")
	line("  connect_timeout: 5s")
	for k, v := range map[string]string{"username": cfg.MQTT.Username, "password": string(cfg.MQTT.Password),
		"password_file": cfg.MQTT.PasswordFile, "ca_file": cfg.MQTT.CAFile, "cert_file": cfg.MQTT.CertFile, "key_file": cfg.MQTT.KeyFile} {
		if v != "" {
			line("  %s: %q", k, v)
		}
	}
	line("s3:")
	line("  endpoint: %q", cfg.S3.Endpoint)
	line("  bucket: %s", cfg.S3.Bucket)
	line("  access_key: %q", cfg.S3.AccessKey)
	if cfg.S3.SecretKeyFile != "" {
		line("  secret_key_file: %q", cfg.S3.SecretKeyFile)
	} else {
		line("  secret_key: %q", string(cfg.S3.SecretKey))
	}
	line("  insecure: %t", cfg.S3.Insecure)
	if cfg.S3.CAFile != "" {
		line("  ca_file: %q", cfg.S3.CAFile)
	}
	line("trust_root: %q", cfg.TrustRoot)
	line("data_dir: %q", cfg.DataDir)
	line("status_interval: %s", ms(time.Duration(cfg.StatusInterval)))
	line("health: {events: %d, window: %s, max_failure_ratio: %g}", cfg.Health.Events,
		ms(time.Duration(cfg.Health.Window)), cfg.Health.MaxFailureRatio)
	line("queue: {depth: %d}", cfg.Queue.Depth)
	line("outbox: {max_messages: %d}", cfg.Outbox.MaxMessages)
	if cfg.Policy.MaxModuleSize > 0 {
		line("policy: {max_module_size: %d}", uint64(cfg.Policy.MaxModuleSize))
	}
	if cfg.Metrics.Listen != "" {
		line("metrics: {listen: %q}", cfg.Metrics.Listen)
	}
	line("log_level: debug") // the test's log says everything when it fails

	path := filepath.Join(filepath.Dir(cfg.DataDir), "agent.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
