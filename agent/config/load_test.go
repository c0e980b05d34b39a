package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/modules"
)

// writeConf writes text, with dir in place of {dir}, to a new file.
func writeConf(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, inDir(text, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPrecedence: file < environment < overrides, setting by setting.
func TestPrecedence(t *testing.T) {
	dir := fixtureDir(t)
	path := writeConf(t, dir, conf("log_level: warn", "groups: [from-file]", "data_dir: /file"))
	env := []string{"WASMFLEET_LOG_LEVEL=error", "WASMFLEET_GROUPS=a, b,,c", "PATH=/bin"}
	over := map[string]string{"log_level": "debug"}

	cases := []struct {
		name       string
		path       string
		env        []string
		over       map[string]string
		level      string
		groups     []string
		dataDir    string
		deviceID   string
		overDevice bool
	}{
		{"file", path, nil, nil, "warn", []string{"from-file"}, "/file", "pi-1", false},
		{"env over file", path, env, nil, "error", []string{"a", "b", "c"}, "/file", "pi-1", false},
		{"overrides over env", path, env, over, "debug", []string{"a", "b", "c"}, "/file", "pi-1", false},
		{"overrides over file", path, nil, map[string]string{"device_id": "pi-2", "groups": ""}, "warn", nil, "/file", "pi-2", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load(c.path, c.env, c.over)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.LogLevel != c.level || !reflect.DeepEqual(cfg.Groups, c.groups) || cfg.DataDir != c.dataDir || cfg.DeviceID != c.deviceID {
				t.Fatalf("got log_level %q groups %q data_dir %q device_id %q", cfg.LogLevel, cfg.Groups, cfg.DataDir, cfg.DeviceID)
			}
			// Defaults come after every source: the client id follows the final device id.
			if cfg.MQTT.ClientID != c.deviceID {
				t.Fatalf("client id %q, want %q", cfg.MQTT.ClientID, c.deviceID)
			}
		})
	}
}

// TestEnvCoversEverySetting: the whole example can be given as environment variables,
// or as overrides, with no file, and gives the same configuration.
func TestEnvCoversEverySetting(t *testing.T) {
	dir := fixtureDir(t)
	want, err := Parse(exampleIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	over := map[string]string{}
	for i := range table {
		s := &table[i]
		if s.Secret {
			continue // the example gives them as files
		}
		text := textOf(s.value(want).Interface())
		env = append(env, s.Env+"="+text)
		over[s.Key] = text
	}
	for name, got := range map[string]func() (*Config, error){
		"env":       func() (*Config, error) { return Load("", env, nil) },
		"overrides": func() (*Config, error) { return Load("", nil, over) },
	} {
		cfg, err := got()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("%s gives\n%#v\nthe file gives\n%#v", name, plain(*cfg), plain(*want))
		}
	}
}

// textOf writes a setting's value as the environment takes it.
func textOf(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, ",")
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case modules.Size, modules.Duration:
		return v.(interface{ String() string }).String()
	}
	panic("no text for " + reflect.TypeOf(v).String())
}

func TestLoadProblems(t *testing.T) {
	dir := fixtureDir(t)
	cases := []struct {
		name string
		file string // "" for no file
		env  []string
		over map[string]string
		want map[string]string
	}{
		{"env bad value", conf(), []string{"WASMFLEET_HEALTH_EVENTS=many"}, nil,
			map[string]string{"health.events": `"many" is not a whole number (from WASMFLEET_HEALTH_EVENTS)`}},
		{"env invalid broker", conf(), []string{"WASMFLEET_MQTT_BROKERS=tcp://h:1883,ftp://x"}, nil,
			map[string]string{"mqtt.brokers[1]": `"ftp://x" is not an MQTT URL (tcp://, ssl://, tls://, mqtts://) (from WASMFLEET_MQTT_BROKERS)`}},
		{"env unknown variable", conf(), []string{"WASMFLEET_MQTT_BROKER=tcp://h:1883"}, nil,
			map[string]string{"": "environment variable WASMFLEET_MQTT_BROKER is not a setting"}},
		{"env bool", conf(), []string{"WASMFLEET_S3_INSECURE=maybe"}, nil,
			map[string]string{"s3.insecure": `"maybe" is not true or false`}},
		{"env ratio", conf(), []string{"WASMFLEET_HEALTH_MAX_FAILURE_RATIO=NaN"}, nil,
			map[string]string{"health.max_failure_ratio": `"NaN" is not a number`}},
		{"override unknown key", conf(), nil, map[string]string{"device-id": "pi-2"},
			map[string]string{"device-id": "is not a setting"}},
		{"override bad value", conf(), nil, map[string]string{"queue.depth": "0x10"},
			map[string]string{"queue.depth": `"0x10" is not a whole number (from overrides)`}},
		{"override invalid value", conf(), nil, map[string]string{"log_level": "loud"},
			map[string]string{"log_level": `"loud" is not a log level (debug, info, warn, error) (from overrides)`}},
		{"file problem after env", conf("log_level: loud"), []string{"WASMFLEET_DATA_DIR=/x"}, nil,
			map[string]string{"log_level": "(line 5)"}},
		{"secret and its file in the environment", conf(), []string{"WASMFLEET_MQTT_USERNAME=u", "WASMFLEET_MQTT_PASSWORD=p", "WASMFLEET_MQTT_PASSWORD_FILE={dir}/mqtt-password"}, nil,
			map[string]string{"mqtt.password_file": "not both"}},
		{"no file, nothing set", "", nil, nil, map[string]string{
			"device_id": "is required", "mqtt.brokers": "", "s3.endpoint": "", "s3.bucket": "", "trust_root": "/etc/wasmfleet/root.json",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeConf(t, dir, c.file)
			}
			var env []string
			for _, e := range c.env {
				env = append(env, strings.ReplaceAll(e, "{dir}", dir))
			}
			cfg, err := Load(path, env, c.over)
			if err == nil {
				t.Fatalf("accepted: %v", cfg)
			}
			checkProblems(t, err, c.want)
		})
	}
}

func TestLoadIgnores(t *testing.T) {
	dir := fixtureDir(t)
	path := writeConf(t, dir, conf("log_level: warn"))
	env := []string{
		"WASMFLEET_LOG_LEVEL=",        // empty: ignored
		"WASMFLEET_CONFIG=/elsewhere", // the command's
		"WASMFLEET_KEY_PASSWORD=x",    // the fleet CLI's
		"WASMFLEET_QUEUE_DEPTH=1",     // a later entry wins, as in exec.Cmd.Env
		"WASMFLEET_QUEUE_DEPTH=2",
		"NOT_WASMFLEET_DEVICE_ID=pi-9", // not ours
		"wasmfleet_device_id=pi-9",     // names are case-sensitive
		"WASMFLEET_POLICY_MAX_MEMORY=1MiB",
	}
	cfg, err := Load(path, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "warn" || cfg.Queue.Depth != 2 || cfg.DeviceID != "pi-1" || cfg.Policy.MaxMemory != modules.MiB {
		t.Fatalf("got %v", cfg)
	}
}

// TestSecretPrecedence: a secret and its *_file form are one setting; a later source
// setting either replaces the other from an earlier source.
func TestSecretPrecedence(t *testing.T) {
	dir := fixtureDir(t)
	withFile := writeConf(t, dir, conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/nope}"))
	// The file names a password file that does not exist; the environment's password wins,
	// so the file is never looked at.
	cfg, err := Load(withFile, []string{"WASMFLEET_MQTT_PASSWORD=from-env"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Password != "from-env" || cfg.MQTT.PasswordFile != "" {
		t.Fatalf("password %q, file %q", string(cfg.MQTT.Password), cfg.MQTT.PasswordFile)
	}

	inline := writeConf(t, dir, conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password: from-file}", "s3: {endpoint: h, bucket: abc, access_key: a, secret_key: from-file}"))
	cfg, err = Load(inline, []string{"WASMFLEET_S3_SECRET_KEY_FILE=" + dir + "/s3-secret-key"}, map[string]string{"mqtt.password_file": dir + "/mqtt-password"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Password != "mqtt-pass-1" || cfg.S3.SecretKey != "s3-secret-1" {
		t.Fatalf("password %q, secret key %q", string(cfg.MQTT.Password), string(cfg.S3.SecretKey))
	}
}

func TestSecretFileTrimsOneNewline(t *testing.T) {
	dir := fixtureDir(t)
	for content, want := range map[string]string{
		"pw":       "pw",
		"pw\n":     "pw",
		"pw\r\n":   "pw",
		"pw\n\n":   "pw\n",
		" pw \n":   " pw ",
		"p\nw\n":   "p\nw",
		"pw\r":     "pw\r",
		"\xffpw\n": "\xffpw",
	} {
		if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(inDir(conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/secret}"), dir))
		if err != nil {
			t.Fatal(err)
		}
		if string(cfg.MQTT.Password) != want {
			t.Errorf("file %q gives %q, want %q", content, string(cfg.MQTT.Password), want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Parse(inDir(conf("mqtt: {brokers: ['tcp://h:1883'], username: u, password_file: {dir}/secret}"), dir))
	checkProblems(t, err, map[string]string{"mqtt.password_file": "is empty"})
}

func TestUnreadableFiles(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	dir := fixtureDir(t)
	if err := os.Chmod(filepath.Join(dir, "s3-secret-key"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := Parse(inDir(conf("s3: {endpoint: h, bucket: abc, access_key: a, secret_key_file: {dir}/s3-secret-key}"), dir))
	checkProblems(t, err, map[string]string{"s3.secret_key_file": "permission denied"})
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "agent.yaml"), nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want one wrapping fs.ErrNotExist", err)
	}
	var ps Problems
	if errors.As(err, &ps) {
		t.Fatal("a missing file is not a configuration problem")
	}
}
