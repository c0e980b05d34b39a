package config

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
)

func TestParseMinimalGetsDefaults(t *testing.T) {
	dir := fixtureDir(t)
	c, err := Parse(inDir(conf(), dir))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DeviceID: "pi-1",
		MQTT: MQTT{
			Brokers:        []string{"tcp://127.0.0.1:1883"},
			ClientID:       "pi-1",
			KeepAlive:      modules.Duration(30 * time.Second),
			ConnectTimeout: modules.Duration(30 * time.Second),
			TopicPrefix:    "wasmfleet",
		},
		S3:             S3{Endpoint: "127.0.0.1:9000", Bucket: "wasmfleet", Region: "us-east-1"},
		TrustRoot:      dir + "/root.json",
		DataDir:        "/var/lib/wasmfleet",
		Health:         Health{Events: 20, Window: modules.Duration(time.Minute), MaxFailureRatio: 0.5},
		StatusInterval: modules.Duration(time.Minute),
		Outbox:         Outbox{MaxMessages: 1000},
		Queue:          Queue{Depth: 64},
		LogLevel:       "info",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse =\n%#v\nwant\n%#v", plain(*c), plain(*want))
	}
}

func TestParseExample(t *testing.T) {
	dir := fixtureDir(t)
	c, err := Parse(exampleIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DeviceID: "pi-kitchen-1",
		Groups:   []string{"kitchen", "sensors-eu"},
		MQTT: MQTT{
			Brokers:        []string{"ssl://broker.example.com:8883"},
			ClientID:       "pi-kitchen-1",
			Username:       "pi-kitchen-1",
			Password:       "mqtt-pass-1",
			PasswordFile:   dir + "/mqtt-password",
			CAFile:         dir + "/ca.pem",
			CertFile:       dir + "/client.pem",
			KeyFile:        dir + "/client.key",
			KeepAlive:      modules.Duration(30 * time.Second),
			ConnectTimeout: modules.Duration(30 * time.Second),
			TopicPrefix:    "wasmfleet",
		},
		S3: S3{
			Endpoint:      "s3.example.com:9000",
			Bucket:        "wasmfleet",
			Region:        "us-east-1",
			AccessKey:     "wasmfleet-reader",
			SecretKey:     "s3-secret-1",
			SecretKeyFile: dir + "/s3-secret-key",
		},
		TrustRoot: dir + "/root.json",
		DataDir:   "/var/lib/wasmfleet",
		Policy: Policy{
			MaxMemory:      64 * modules.MiB,
			MaxTimeout:     modules.Duration(time.Second),
			MaxConcurrency: 4,
			MaxKV:          modules.MiB,
			AllowedTopics:  []string{"sensors/", "alerts/{device}/"},
			MaxModuleSize:  16 * modules.MiB,
		},
		Health:         Health{Events: 20, Window: modules.Duration(time.Minute), MaxFailureRatio: 0.5},
		StatusInterval: modules.Duration(time.Minute),
		Outbox:         Outbox{MaxMessages: 1000},
		Queue:          Queue{Depth: 64},
		Metrics:        Metrics{Listen: "127.0.0.1:9464"},
		LogLevel:       "info",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse(example) =\n%#v\nwant\n%#v", plain(*c), plain(*want))
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a loaded configuration does not validate again: %v", err)
	}
	got := c.Policy.ForDevice(c.DeviceID)
	wantPolicy := modules.Policy{
		MaxMemory: 64 * modules.MiB, MaxTimeout: modules.Duration(time.Second), MaxConcurrency: 4, MaxKV: modules.MiB,
		TopicPrefixes: []string{"sensors/", "alerts/pi-kitchen-1/"},
	}
	if !reflect.DeepEqual(got, wantPolicy) {
		t.Fatalf("ForDevice = %+v, want %+v", got, wantPolicy)
	}
}

// TestExampleDocumentsEverySetting: example.yaml sets every key with a comment on it, so
// the documentation copied from it cannot fall behind Config.
func TestExampleDocumentsEverySetting(t *testing.T) {
	for _, s := range Settings() {
		if s.Doc == "" {
			t.Errorf("%s has no comment in example.yaml", s.Key)
		}
	}
}

func TestValidConfigs(t *testing.T) {
	cases := []struct {
		name, yaml string
		check      func(*Config) bool
	}{
		{"mtls", conf("mqtt: {brokers: ['mqtts://b.example:8883'], ca_file: {dir}/ca.pem, cert_file: {dir}/client.pem, key_file: {dir}/client.key}"),
			func(c *Config) bool { return c.MQTT.KeyFile != "" }},
		{"inline secrets", conf("mqtt: {brokers: ['tcp://[::1]:1883'], username: u, password: p}", "s3: {endpoint: s3.amazonaws.com, bucket: my.bucket-1, access_key: AK, secret_key: SK}"),
			func(c *Config) bool { return c.MQTT.Password == "p" && c.S3.SecretKey == "SK" }},
		{"password as a number", conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password: 0123}"),
			func(c *Config) bool { return c.MQTT.Password == "0123" }},
		{"secret files", conf("mqtt: {brokers: ['tls://h:8883'], username: u, password_file: {dir}/mqtt-password}", "s3: {endpoint: 'h:1', bucket: abc, access_key: AK, secret_key_file: {dir}/s3-secret-key}"),
			func(c *Config) bool { return c.MQTT.Password == "mqtt-pass-1" && c.S3.SecretKey == "s3-secret-1" }},
		{"null values are unset", conf("metrics:", "policy: {max_memory: ~}", "groups: []", "log_level: null"),
			func(c *Config) bool { return c.LogLevel == "info" && c.Groups == nil }},
		{"empty sections", conf("health: {}", "queue: {}"),
			func(c *Config) bool { return c.Health.Events == 20 && c.Queue.Depth == 64 }},
		{"insecure s3", conf("s3: {endpoint: 'minio:9000', bucket: abc, insecure: true, region: garage}"),
			func(c *Config) bool { return c.S3.Insecure && c.S3.Region == "garage" }},
		{"metrics on ::1", conf("metrics: {listen: '[::1]:9464'}"), func(c *Config) bool { return true }},
		{"metrics on localhost", conf("metrics: {listen: 'localhost:9464'}"), func(c *Config) bool { return true }},
		{"ratio 1 and int", conf("health: {max_failure_ratio: 1, events: 1, window: 1s}"),
			func(c *Config) bool { return c.Health.MaxFailureRatio == 1 }},
		{"sizes as bytes", conf("policy: {max_memory: 65536, max_kv: 16KB}"),
			func(c *Config) bool { return c.Policy.MaxMemory == 64*modules.KiB && c.Policy.MaxKV == 16000 }},
		{"JSON", `{"device_id": "pi-1", "mqtt": {"brokers": ["tcp://h:1883"]}, "s3": {"endpoint": "h", "bucket": "abc"}, "trust_root": "{dir}/root.json"}`,
			func(c *Config) bool { return c.DeviceID == "pi-1" }},
		{"comments only, plus env-less minimal", "# nothing here\n" + conf(), func(c *Config) bool { return true }},
	}
	dir := fixtureDir(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(inDir(c.yaml, dir))
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(cfg) {
				t.Fatalf("unexpected result: %+v", cfg)
			}
		})
	}
}

// problemCases are configurations and everything Parse must say about them: each
// problem's path and a fragment of its message. There must be no other problems. They
// also seed FuzzParse; {dir} is a fixtureDir.
var problemCases = []struct {
	name, yaml string
	want       map[string]string // path -> fragment of the message
}{
	{"not YAML", "device_id: [a", map[string]string{"": "not valid YAML"}},
	{"not a mapping", "- a\n- b", map[string]string{"": "must be a mapping of settings, not a list"}},
	{"two documents", conf() + "---\ndevice_id: b\n", map[string]string{"": "more than one YAML document"}},
	{"empty", "", map[string]string{
		"device_id": "is required", "mqtt.brokers": "at least one broker", "s3.endpoint": "is required",
		"s3.bucket": "is required", "trust_root": `root.json" does not exist`,
	}},
	{"unknown field", conf("sudo: true"), map[string]string{"sudo": "unknown field (line 5)"}},
	{"unknown nested field", conf("mqtt: {brokers: ['tcp://h:1883'], qos: 2}"), map[string]string{"mqtt.qos": "unknown field"}},
	{"field at the wrong level", conf("brokers: ['tcp://h:1883']"), map[string]string{"brokers": "did you mean mqtt.brokers?"}},
	{"given twice", conf() + "log_level: info\nlog_level: warn\n", map[string]string{"log_level": "is given twice"}},
	{"anchor", conf("device_id: &d pi-1"), map[string]string{"device_id": "anchors"}},
	{"wrong types", conf("groups: kitchen", "health: {events: '20', max_failure_ratio: half}", "s3: {endpoint: h, bucket: abc, insecure: 'yes'}", "outbox: 5"), map[string]string{
		"groups":                   `must be a list of strings, not "kitchen"`,
		"health.events":            `must be a whole number, not "20"`,
		"health.max_failure_ratio": `must be a number, not "half"`,
		"s3.insecure":              `must be true or false, not "yes"`,
		"outbox":                   "must be a mapping",
	}},
	{"string for a mapping value", conf("device_id: {a: b}"), map[string]string{"device_id": "must be a string, not a mapping"}},
	{"list item not a string", conf("groups: [a, [b]]"), map[string]string{"groups[1]": "must be a string, not a list"}},
	{"nan ratio", conf("health: {max_failure_ratio: .nan}"), map[string]string{"health.max_failure_ratio": "must be a number"}},
	{"bad size and duration", conf("policy: {max_memory: 4XB, max_timeout: forever}"), map[string]string{
		"policy.max_memory": `"4XB" is not a size`, "policy.max_timeout": `"forever" is not a duration`,
	}},
	{"bad device id", conf("device_id: pi 1"), map[string]string{"device_id": `device id "pi 1": character ' ' is not allowed (use A-Z a-z 0-9 . _ -) (line 1)`}},
	{"bad groups", conf("groups: [kitchen, .hidden, kitchen]"), map[string]string{
		"groups[1]": `".hidden" is not a group name`, "groups[2]": `"kitchen" is listed twice`,
	}},
	{"no brokers", conf("mqtt: {brokers: []}"), map[string]string{"mqtt.brokers": "at least one broker is required"}},
	{"ftp broker", conf("mqtt: {brokers: ['tcp://h:1883', 'ftp://x']}"), map[string]string{
		"mqtt.brokers[1]": `"ftp://x" is not an MQTT URL (tcp://, ssl://, tls://, mqtts://) (line 2)`,
	}},
	{"broker problems", conf("mqtt: {brokers: ['tcp://h', 'ssl://h:99999', 'tcp://h:1883/x', 'h:1883', 'tcp://:1883', 'tcp://h:1883', 'tcp://h:1883']}"), map[string]string{
		"mqtt.brokers[0]": "needs host:port",
		"mqtt.brokers[1]": `port "99999" is not 1 to 65535`,
		"mqtt.brokers[2]": "nothing after the port",
		"mqtt.brokers[3]": "is not an MQTT URL",
		"mqtt.brokers[4]": "has no host",
		"mqtt.brokers[6]": "listed twice",
	}},
	{"credentials in a broker URL", conf("mqtt: {brokers: ['ssl://u:hunter2@h:8883']}"), map[string]string{"mqtt.brokers[0]": "holds credentials"}},
	{"password without user", conf("mqtt: {brokers: ['tcp://h:1883'], password: p}"), map[string]string{"mqtt.username": "is required when a password is set"}},
	{"password twice", conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password: p, password_file: {dir}/mqtt-password}"), map[string]string{
		"mqtt.password_file": "set mqtt.password or mqtt.password_file, not both",
	}},
	{"missing password file", conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/nope}"), map[string]string{"mqtt.password_file": `nope" does not exist`}},
	{"password file is a directory", conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/sub}"), map[string]string{"mqtt.password_file": "is not a regular file"}},
	{"empty password file", conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/empty}"), map[string]string{"mqtt.password_file": "is empty"}},
	{"cert without key", conf("mqtt: {brokers: ['ssl://h:8883'], cert_file: {dir}/client.pem}"), map[string]string{"mqtt.key_file": "is required when mqtt.cert_file is set"}},
	{"key without cert", conf("mqtt: {brokers: ['ssl://h:8883'], key_file: {dir}/client.key}"), map[string]string{"mqtt.cert_file": "is required when mqtt.key_file is set"}},
	{"key of another cert", conf("mqtt: {brokers: ['ssl://h:8883'], cert_file: {dir}/client.pem, key_file: {dir}/other.key}"), map[string]string{"mqtt.cert_file": "are not a certificate and its key"}},
	{"garbage CA", conf("mqtt: {brokers: ['ssl://h:8883'], ca_file: {dir}/garbage.pem}"), map[string]string{"mqtt.ca_file": "holds no PEM certificate"}},
	{"TLS files without a TLS broker", conf("mqtt: {brokers: ['tcp://h:1883'], ca_file: {dir}/ca.pem}"), map[string]string{"mqtt.ca_file": "no broker uses TLS"}},
	{"mqtt ranges", conf("mqtt: {brokers: ['tcp://h:1883'], keep_alive: 500ms, connect_timeout: -1s, topic_prefix: 'a/#'}"), map[string]string{
		"mqtt.keep_alive": "out of range", "mqtt.connect_timeout": "out of range", "mqtt.topic_prefix": "wildcard",
	}},
	{"topic prefix slash", conf("mqtt: {brokers: ['tcp://h:1883'], topic_prefix: 'wasmfleet/'}"), map[string]string{"mqtt.topic_prefix": "must not start or end with /"}},
	{"s3 endpoint with scheme", conf("s3: {endpoint: 'https://s3.example.com', bucket: abc}"), map[string]string{"s3.endpoint": "without a scheme"}},
	{"s3 problems", conf("s3: {endpoint: 'h:x', bucket: Bad_Bucket, region: 'eu west', secret_key: s}"), map[string]string{
		"s3.endpoint": `port "x"`, "s3.bucket": "is not a bucket name", "s3.region": "is not a region name", "s3.access_key": "is required when a secret key is set",
	}},
	{"access key without secret", conf("s3: {endpoint: h, bucket: abc, access_key: AK}"), map[string]string{"s3.secret_key": "is required when s3.access_key is set"}},
	{"CA with insecure", conf("s3: {endpoint: h, bucket: abc, insecure: true, ca_file: {dir}/ca.pem}"), map[string]string{"s3.ca_file": "plain http"}},
	{"secret key twice", conf("s3: {endpoint: h, bucket: abc, access_key: a, secret_key: s, secret_key_file: {dir}/s3-secret-key}"), map[string]string{"s3.secret_key_file": "not both"}},
	{"missing trust root", conf("trust_root: {dir}/nope.json"), map[string]string{"trust_root": "does not exist"}},
	{"policy ranges", conf("policy: {max_memory: 1KiB, max_timeout: 2h, max_concurrency: -1, max_kv: 1GiB, allowed_topics: ['alerts/+/x']}"), map[string]string{
		"policy.max_memory": "out of range", "policy.max_timeout": "out of range", "policy.max_concurrency": "out of range",
		"policy.max_kv": "out of range", "policy.allowed_topics[0]": "wildcard",
	}},
	{"health ranges", conf("health: {events: -1, window: 48h, max_failure_ratio: 1.5}"), map[string]string{
		"health.events": "out of range", "health.window": "out of range", "health.max_failure_ratio": "out of range",
	}},
	{"ratio below zero", conf("health: {max_failure_ratio: -0.1}"), map[string]string{"health.max_failure_ratio": "out of range"}},
	{"other ranges", conf("status_interval: 10ms", "outbox: {max_messages: -5}", "queue: {depth: 100000}"), map[string]string{
		"status_interval": "out of range", "outbox.max_messages": "out of range", "queue.depth": "out of range",
	}},
	{"int too large", conf("queue: {depth: 99999999999}"), map[string]string{"queue.depth": "must be a whole number"}},
	{"metrics on all interfaces", conf("metrics: {listen: ':9464'}"), map[string]string{"metrics.listen": "is not a loopback address"}},
	{"metrics on a LAN address", conf("metrics: {listen: '192.168.1.5:9464'}"), map[string]string{"metrics.listen": `"192.168.1.5:9464" is not a loopback address`}},
	{"metrics without port", conf("metrics: {listen: '127.0.0.1'}"), map[string]string{"metrics.listen": "is not host:port"}},
	{"log level", conf("log_level: loud"), map[string]string{"log_level": `"loud" is not a log level (debug, info, warn, error) (line 5)`}},
	{"wrong-type key", conf("? [a]\n: b"), map[string]string{"": "keys must be plain strings"}},
}

func TestParseProblems(t *testing.T) {
	dir := fixtureDir(t)
	for _, c := range problemCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(inDir(c.yaml, dir))
			if err == nil {
				t.Fatalf("accepted: %v", cfg)
			}
			checkProblems(t, err, c.want)
		})
	}
}

// checkProblems fails unless err is Problems with exactly the paths of want, each
// message holding its fragment.
func checkProblems(t *testing.T, err error, want map[string]string) {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	var got, wantPaths []string
	for _, p := range ps {
		got = append(got, p.Path)
		if frag, ok := want[p.Path]; ok && !strings.Contains(p.Msg, frag) {
			t.Errorf("problem at %q is %q, want it to mention %q", p.Path, p.Msg, frag)
		}
	}
	for p := range want {
		wantPaths = append(wantPaths, p)
	}
	sort.Strings(got)
	sort.Strings(wantPaths)
	if !reflect.DeepEqual(got, wantPaths) {
		t.Errorf("problems at %q, want %q\n%v", got, wantPaths, err)
	}
}

func TestEveryProblemReported(t *testing.T) {
	_, err := Parse([]byte("device_id: .x\nmqtt: {brokers: [ftp://x]}\ns3: {bucket: A}\nlog_level: loud\nbogus: 1\n"))
	checkProblems(t, err, map[string]string{
		"device_id": "", "mqtt.brokers[0]": "", "s3.endpoint": "", "s3.bucket": "", "log_level": "", "bogus": "",
		"trust_root": "/etc/wasmfleet/root.json", // the default, which this machine does not have
	})
	if !strings.HasPrefix(err.Error(), "invalid agent configuration: ") {
		t.Errorf("message %q", err)
	}
}

func TestTooLarge(t *testing.T) {
	_, err := Parse([]byte(strings.Repeat("#", MaxFileSize+1)))
	checkProblems(t, err, map[string]string{"": "larger than"})
}

// TestValidateInCode: a Config built in code is checked the same way.
func TestValidateInCode(t *testing.T) {
	dir := fixtureDir(t)
	c := Config{DeviceID: "pi-1", MQTT: MQTT{Brokers: []string{"tcp://h:1883"}}, S3: S3{Endpoint: "h", Bucket: "abc"}, TrustRoot: dir + "/root.json"}
	checkProblems(t, c.Validate(), map[string]string{
		"mqtt.client_id": "", "mqtt.keep_alive": "", "mqtt.connect_timeout": "", "mqtt.topic_prefix": "", "s3.region": "",
		"data_dir": "", "health.events": "", "health.window": "", "health.max_failure_ratio": "", "status_interval": "",
		"outbox.max_messages": "", "queue.depth": "", "log_level": "",
	})
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
