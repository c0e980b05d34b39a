package config

import (
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// DefaultPath is where wasmfleet-agent looks for its configuration file.
const DefaultPath = "/etc/wasmfleet/agent.yaml"

// Defaults that SetDefaults gives to fields left zero. Each field's comment names its own.
const (
	defaultKeepAlive       = modules.Duration(30 * time.Second)
	defaultConnectTimeout  = modules.Duration(30 * time.Second)
	defaultTopicPrefix     = "wasmfleet"
	defaultRegion          = "us-east-1"
	defaultTrustRoot       = "/etc/wasmfleet/root.json"
	defaultDataDir         = "/var/lib/wasmfleet"
	defaultHealthEvents    = 20
	defaultHealthWindow    = modules.Duration(60 * time.Second)
	defaultMaxFailureRatio = 0.5
	defaultStatusInterval  = modules.Duration(60 * time.Second)
	defaultOutboxMessages  = 1000
	defaultQueueDepth      = 64
	defaultLogLevel        = "info"
)

// Config is the device agent's configuration. Its YAML keys are the `yaml` tags below
// (example.yaml shows every one); the same keys name the environment variables and the
// overrides that Load accepts. The zero value is not valid: at least device_id,
// mqtt.brokers, s3.endpoint and s3.bucket must be set. Load and Parse apply the defaults
// and validate; a Config built in code should call SetDefaults and Validate.
//
// Printing a Config in any way (fmt verbs, JSON, YAML, zerolog) shows its Redacted form.
type Config struct {
	DeviceID       string           `yaml:"device_id" json:"device_id"` // required; rule of topic.ValidateDeviceID
	Groups         []string         `yaml:"groups" json:"groups"`       // groups whose desired state this device follows
	MQTT           MQTT             `yaml:"mqtt" json:"mqtt"`
	S3             S3               `yaml:"s3" json:"s3"`
	TrustRoot      string           `yaml:"trust_root" json:"trust_root"` // provisioned trust file; default /etc/wasmfleet/root.json
	DataDir        string           `yaml:"data_dir" json:"data_dir"`     // module store and state; default /var/lib/wasmfleet
	Policy         Policy           `yaml:"policy" json:"policy"`
	Health         Health           `yaml:"health" json:"health"`
	StatusInterval modules.Duration `yaml:"status_interval" json:"status_interval"` // periodic status report; default 60s
	Outbox         Outbox           `yaml:"outbox" json:"outbox"`
	Queue          Queue            `yaml:"queue" json:"queue"`
	Metrics        Metrics          `yaml:"metrics" json:"metrics"`
	LogLevel       string           `yaml:"log_level" json:"log_level"` // debug, info, warn or error; default info
}

// MQTT is how the agent reaches its broker: TLS with a CA and optionally a client
// certificate (mTLS), and/or a username and password.
type MQTT struct {
	Brokers        []string         `yaml:"brokers" json:"brokers"`     // required; tcp://, ssl://, tls:// or mqtts:// host:port, tried in order
	ClientID       string           `yaml:"client_id" json:"client_id"` // default: the device id
	Username       string           `yaml:"username" json:"username"`
	Password       Secret           `yaml:"password" json:"password"`               // after Load, also the content of PasswordFile
	PasswordFile   string           `yaml:"password_file" json:"password_file"`     // file holding the password (one trailing newline trimmed)
	CAFile         string           `yaml:"ca_file" json:"ca_file"`                 // PEM CA certificates for ssl:// brokers; default: the system's
	CertFile       string           `yaml:"cert_file" json:"cert_file"`             // PEM client certificate (mTLS), with KeyFile
	KeyFile        string           `yaml:"key_file" json:"key_file"`               // PEM client key (mTLS), with CertFile
	KeepAlive      modules.Duration `yaml:"keep_alive" json:"keep_alive"`           // default 30s
	ConnectTimeout modules.Duration `yaml:"connect_timeout" json:"connect_timeout"` // default 30s
	TopicPrefix    string           `yaml:"topic_prefix" json:"topic_prefix"`       // first level of the control topics; default "wasmfleet"
}

// S3 is where releases and modules are fetched from: any S3-compatible store, with
// read-only credentials (or none, for a public bucket).
type S3 struct {
	Endpoint      string `yaml:"endpoint" json:"endpoint"`               // required; host or host:port, no scheme
	Bucket        string `yaml:"bucket" json:"bucket"`                   // required
	Region        string `yaml:"region" json:"region"`                   // default us-east-1
	AccessKey     string `yaml:"access_key" json:"access_key"`           // with SecretKey, or neither (anonymous)
	SecretKey     Secret `yaml:"secret_key" json:"secret_key"`           // after Load, also the content of SecretKeyFile
	SecretKeyFile string `yaml:"secret_key_file" json:"secret_key_file"` // file holding the secret key (one trailing newline trimmed)
	Insecure      bool   `yaml:"insecure" json:"insecure"`               // plain http instead of https
	CAFile        string `yaml:"ca_file" json:"ca_file"`                 // PEM CA certificates for https; default: the system's
}

// Policy is what this device allows any module; a release asking for more is refused with
// the reason. Zero fields allow anything.
type Policy struct {
	MaxMemory      modules.Size     `yaml:"max_memory" json:"max_memory"`           // largest limits.memory
	MaxTimeout     modules.Duration `yaml:"max_timeout" json:"max_timeout"`         // longest limits.timeout
	MaxConcurrency int              `yaml:"max_concurrency" json:"max_concurrency"` // largest limits.concurrency
	MaxKV          modules.Size     `yaml:"max_kv" json:"max_kv"`                   // largest capabilities.kv.max_bytes
	AllowedTopics  []string         `yaml:"allowed_topics" json:"allowed_topics"`   // topic prefixes; {device} is this device's id
	MaxModuleSize  modules.Size     `yaml:"max_module_size" json:"max_module_size"` // largest .wasm the agent downloads; 0 means 32MiB
}

// ForDevice is the policy in the form modules.Policy.Check takes, with {device} in the
// allowed topic prefixes replaced by device. MaxModuleSize is not part of it: it bounds
// downloads, before there is a manifest to check.
func (p Policy) ForDevice(device string) modules.Policy {
	var prefixes []string
	for _, t := range p.AllowedTopics {
		prefixes = append(prefixes, topic.Expand(t, device))
	}
	return modules.Policy{
		MaxMemory:      p.MaxMemory,
		MaxTimeout:     p.MaxTimeout,
		MaxConcurrency: p.MaxConcurrency,
		MaxKV:          p.MaxKV,
		TopicPrefixes:  prefixes,
	}
}

// Health is the window after a module is activated in which its failures are counted:
// it ends after Events events or Window, whichever comes first, and the module is rolled
// back if failures/events exceeds MaxFailureRatio.
type Health struct {
	Events          int              `yaml:"events" json:"events"`                       // default 20
	Window          modules.Duration `yaml:"window" json:"window"`                       // default 60s
	MaxFailureRatio float64          `yaml:"max_failure_ratio" json:"max_failure_ratio"` // in (0, 1]; default 0.5
}

// Outbox bounds the messages queued for the broker while it is unreachable; beyond it
// messages are dropped and counted.
type Outbox struct {
	MaxMessages int `yaml:"max_messages" json:"max_messages"` // default 1000
}

// Queue bounds the events waiting for each module's workers; beyond it events are
// dropped and counted.
type Queue struct {
	Depth int `yaml:"depth" json:"depth"` // per module; default 64
}

// Metrics is the optional Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen" json:"listen"` // loopback host:port such as 127.0.0.1:9464; empty: off
}

// SetDefaults gives every field that has a default and is zero its default value.
func (c *Config) SetDefaults() {
	setDefault(&c.MQTT.ClientID, c.DeviceID)
	setDefault(&c.MQTT.KeepAlive, defaultKeepAlive)
	setDefault(&c.MQTT.ConnectTimeout, defaultConnectTimeout)
	setDefault(&c.MQTT.TopicPrefix, defaultTopicPrefix)
	setDefault(&c.S3.Region, defaultRegion)
	setDefault(&c.TrustRoot, defaultTrustRoot)
	setDefault(&c.DataDir, defaultDataDir)
	setDefault(&c.Health.Events, defaultHealthEvents)
	setDefault(&c.Health.Window, defaultHealthWindow)
	setDefault(&c.Health.MaxFailureRatio, defaultMaxFailureRatio)
	setDefault(&c.StatusInterval, defaultStatusInterval)
	setDefault(&c.Outbox.MaxMessages, defaultOutboxMessages)
	setDefault(&c.Queue.Depth, defaultQueueDepth)
	setDefault(&c.LogLevel, defaultLogLevel)
}

func setDefault[T comparable](dst *T, v T) {
	var zero T
	if *dst == zero {
		*dst = v
	}
}

// Problems is every problem found in a configuration, each at a field path such as
// "mqtt.brokers[1]". It is the error Parse, Load and Validate return.
type Problems []modules.Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return "invalid agent configuration: " + strings.Join(lines, "; ")
}

func (ps *Problems) add(path, msg string) {
	*ps = append(*ps, modules.Problem{Path: path, Msg: msg})
}

func (ps Problems) has(path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
