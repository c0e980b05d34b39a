package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent"
	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/modules"
)

// The local agents' settings that differ from a device's defaults: statuses every 5s and
// a health window of 3 events or 5s, so that waves pass in seconds.
const (
	agentStatusInterval = 5 * time.Second
	agentHealthEvents   = 3
	agentHealthWindow   = 5 * time.Second
)

// localAgent is a device agent running in this process.
type localAgent struct {
	id     string
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// agentConfig is the configuration of local agent id: its data in DIR/agents/ID, the
// trust file of the keys directory, the environment's broker and store.
func (e *Env) agentConfig(id string, info Info) (*config.Config, error) {
	dir := filepath.Join(e.dir, "agents", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := &config.Config{DeviceID: id, Groups: []string{info.Group}, TrustRoot: info.Trust, DataDir: dir, LogLevel: "warn"}
	cfg.MQTT.Brokers = []string{info.Broker}
	cfg.MQTT.Username, cfg.MQTT.Password = info.MQTTUsername, config.Secret(info.MQTTPassword)
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.Region, cfg.S3.Insecure = info.S3Endpoint, info.Bucket, info.Region, true
	cfg.S3.AccessKey, cfg.S3.SecretKey = info.S3AccessKey, config.Secret(info.S3SecretKey)
	cfg.StatusInterval = modules.Duration(agentStatusInterval)
	cfg.Health.Events, cfg.Health.Window = agentHealthEvents, modules.Duration(agentHealthWindow)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// startAgent starts local agent id; it runs until ctx ends.
func (e *Env) startAgent(ctx context.Context, id string, info Info) (*localAgent, error) {
	cfg, err := e.agentConfig(id, info)
	if err != nil {
		return nil, err
	}
	log := e.log.Level(max(e.log.GetLevel(), zerolog.WarnLevel)).With().Str("device", id).Logger()
	actx, cancel := context.WithCancel(ctx)
	a, err := agent.New(actx, cfg, log)
	if err != nil {
		cancel()
		return nil, err
	}
	la := &localAgent{id: id, a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { la.done <- a.Start(actx) }()
	return la, nil
}

// stop ends the agent and waits for it.
func (la *localAgent) stop() error {
	la.cancel()
	err := <-la.done
	la.a.Close()
	return err
}

// agentYAML is the configuration for a wasmfleet-agent that joins the dev environment from
// outside this process: the same settings as the local agents, with the secrets inline
// (the file is 0600, like the environment file).
var agentYAML = template.Must(template.New("agent.yaml").Funcs(template.FuncMap{"q": yamlQuote}).Parse(`# A wasmfleet-agent configuration for the dev environment in {{.Dir}}
# (written by 'wasmfleet dev' at every start). Run a device with its own id and data directory:
#   wasmfleet-agent --config {{.AgentConfig}} --device-id my-device --data-dir /tmp/my-device
# The broker and the store listen where the last 'wasmfleet dev' in that directory did.
device_id: my-device
groups: [{{q .Group}}]
mqtt:
  brokers: [{{q .Broker}}]
  username: {{q .MQTTUsername}}
  password: {{q .MQTTPassword}}
s3:
  endpoint: {{q .S3Endpoint}}
  bucket: {{q .Bucket}}
  region: {{q .Region}}
  access_key: {{q .S3AccessKey}}
  secret_key: {{q .S3SecretKey}}
  insecure: true
trust_root: {{q .Trust}}
data_dir: {{q .ExtraDir}}
status_interval: 5s
health: { events: 3, window: 5s }
`))

// yamlQuote writes s as a double-quoted YAML scalar (a JSON string is one).
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeAgentConfig writes DIR/agent.yaml and checks that the agent reads it.
func writeAgentConfig(info Info) error {
	var b bytes.Buffer
	if err := agentYAML.Execute(&b, struct {
		Info
		ExtraDir string
	}{info, filepath.Join(info.Dir, "agents", "my-device")}); err != nil {
		return err
	}
	if _, err := config.Parse(b.Bytes()); err != nil {
		return fmt.Errorf("the agent configuration written for %s does not parse: %w", info.Dir, err)
	}
	return atomicfile.Write(info.AgentConfig, b.Bytes(), 0o600)
}
