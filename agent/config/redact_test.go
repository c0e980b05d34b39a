package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
)

const (
	mqttSecret = "hunter2-mqtt"
	s3Secret   = "hunter2-s3"
	urlSecret  = "hunter2-url"
)

func secretConfig() Config {
	return Config{
		DeviceID: "pi-1",
		Groups:   []string{"kitchen"},
		MQTT: MQTT{
			Brokers:  []string{"ssl://u:" + urlSecret + "@h:8883", "tcp://h:1883"},
			Username: "u",
			Password: mqttSecret,
		},
		S3: S3{Endpoint: "h", Bucket: "abc", AccessKey: "AK", SecretKey: s3Secret},
	}
}

// printed is every way a configuration (or its secret-holding sections) can be turned
// into text by the code around it.
func printed(t *testing.T, c Config) map[string]string {
	out := map[string]string{}
	// Not %p: fmt calls no methods for it, but go vet refuses %p of a non-pointer.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.4s", "%t"} {
		for name, v := range map[string]any{"Config": c, "*Config": &c, "MQTT": c.MQTT, "S3": c.S3, "*MQTT": &c.MQTT, "Password": c.MQTT.Password, "SecretKey": c.S3.SecretKey} {
			out["fmt "+verb+" "+name] = fmt.Sprintf(verb, v)
		}
	}
	out["Sprint"] = fmt.Sprint(c, &c, c.MQTT, c.S3)
	out["Println"] = fmt.Sprintln(c, &c, c.MQTT, c.S3)
	out["error wrapping"] = fmt.Errorf("start with %v: %w", c, fmt.Errorf("mqtt %+v", c.MQTT)).Error()

	for name, v := range map[string]any{"Config": c, "*Config": &c, "MQTT": c.MQTT, "S3": c.S3, "map": map[string]any{"c": c}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out["json "+name] = string(j)
		y, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out["yaml "+name] = string(y)
	}

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", c).Msg("")
	log.Info().Object("config", &c).Msg("")
	log.Info().Interface("config", c).Msg("")
	log.Info().Any("mqtt", c.MQTT).Any("s3", &c.S3).Msg("")
	log.Info().Stringer("password", c.MQTT.Password).Msg("")
	log.Info().Msgf("%v %+v", c, c.S3)
	log.Info().Fields(map[string]any{"c": c, "mqtt": c.MQTT}).Msg("")
	log.Info().EmbedObject(c).Msg("")
	out["zerolog"] = buf.String()

	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("", "config", c, "mqtt", c.MQTT, "secret", c.S3.SecretKey)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("", "config", c, "mqtt", c.MQTT, "secret", c.S3.SecretKey)
	out["slog"] = buf.String()
	return out
}

// TestSecretsNeverPrinted: no way of printing a configuration shows its secrets, and
// each shows that there was one.
func TestSecretsNeverPrinted(t *testing.T) {
	c := secretConfig()
	before := fmt.Sprintf("%#v", plain(c))
	for name, text := range printed(t, c) {
		secrets := []string{mqttSecret, s3Secret}
		if strings.Contains(name, "Config") {
			// Validate refuses credentials in a broker URL, so only an invalid
			// configuration built in code has them; Config's own forms hide them anyway,
			// its sections do not.
			secrets = append(secrets, urlSecret)
		}
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s leaks %q:\n%s", name, secret, text)
			}
		}
		if !strings.Contains(text, "[redacted]") {
			t.Errorf("%s does not show that a secret is set:\n%s", name, text)
		}
	}
	if after := fmt.Sprintf("%#v", plain(c)); after != before {
		t.Fatalf("printing changed the configuration:\n%s\n%s", before, after)
	}
	if string(c.MQTT.Password) != mqttSecret {
		t.Fatal("the secret itself is gone")
	}
}

func TestRedacted(t *testing.T) {
	c := secretConfig()
	r := c.Redacted()
	if string(r.MQTT.Password) != "[redacted]" || string(r.S3.SecretKey) != "[redacted]" {
		t.Fatalf("Redacted secrets: %q %q", string(r.MQTT.Password), string(r.S3.SecretKey))
	}
	if r.MQTT.Brokers[0] != "ssl://u:xxxxx@h:8883" || r.MQTT.Brokers[1] != "tcp://h:1883" {
		t.Fatalf("Redacted brokers: %q", r.MQTT.Brokers)
	}
	r.Groups[0] = "changed"
	if c.Groups[0] != "kitchen" {
		t.Fatal("Redacted shares slices with the original")
	}
	// Unset secrets stay empty, so a reader sees they are unset.
	c.MQTT.Password, c.S3.SecretKey = "", ""
	r = c.Redacted()
	if r.MQTT.Password != "" || r.S3.SecretKey != "" {
		t.Fatalf("unset secrets print as %q %q", string(r.MQTT.Password), string(r.S3.SecretKey))
	}
	if s := c.String(); strings.Contains(s, "password") || strings.Contains(s, "secret_key") {
		t.Fatalf("String shows unset secrets: %s", s)
	}
}

func TestPrintedForms(t *testing.T) {
	c := secretConfig()
	c.MQTT.Brokers = []string{"tcp://h:1883"}
	c.SetDefaults()
	s := c.String()
	for _, want := range []string{`device_id="pi-1"`, `groups=["kitchen"]`, `mqtt.password="[redacted]"`, `mqtt.keep_alive=30s`, `health.max_failure_ratio=0.5`} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %s\nwant it to hold %s", s, want)
		}
	}
	if strings.Contains(s, "metrics.listen") {
		t.Errorf("String() shows an unset field: %s", s)
	}
	if g := fmt.Sprintf("%#v", c); !strings.HasPrefix(g, `config.Config{DeviceID:"pi-1"`) || !strings.Contains(g, `Password:"[redacted]"`) {
		t.Errorf("GoString() = %s", g)
	}

	var buf bytes.Buffer
	zl := zerolog.New(&buf)
	zl.Info().Object("config", c).Msg("")
	var logged struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &logged); err != nil {
		t.Fatal(err)
	}
	mqtt, _ := logged.Config["mqtt"].(map[string]any)
	if logged.Config["device_id"] != "pi-1" || mqtt["password"] != "[redacted]" || mqtt["keep_alive"] != "30s" {
		t.Errorf("zerolog object: %s", buf.String())
	}
}

// TestPrintedFormsParseBack: JSON and YAML of a configuration without secrets are
// configuration files that give it back.
func TestPrintedFormsParseBack(t *testing.T) {
	dir := fixtureDir(t)
	c, err := Parse(inDir(conf("groups: [a, b]", "policy: {max_memory: 1MiB, max_timeout: 1m30s, allowed_topics: [x/]}", "s3: {endpoint: h, bucket: abc, insecure: true}", "health: {max_failure_ratio: 0.25}"), dir))
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string][]byte{"json": j, "yaml": y} {
		back, err := Parse(text)
		if err != nil {
			t.Fatalf("%s does not parse: %v\n%s", name, err, text)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s round trip:\n%s\ngives %#v\nwant %#v", name, text, plain(*back), plain(*c))
		}
	}
}

// TestProblemsHideSecrets: what is wrong with a configuration is said without its
// secrets, even where the secret is what is wrong.
func TestProblemsHideSecrets(t *testing.T) {
	text := "device_id: .bad\n" +
		"mqtt: {brokers: ['tcp://u:" + urlSecret + "@h:1883', 'ftp://u:" + urlSecret + "@h', 'tcp://u:" + urlSecret + "@h:1883/x'], password: " + mqttSecret + ", password_file: /nonexistent}\n" +
		"s3: {endpoint: h, bucket: abc, secret_key: {a: " + s3Secret + "}}\n"
	_, err := Load("", []string{"WASMFLEET_S3_SECRET_KEY=" + s3Secret, "WASMFLEET_BOGUS=" + s3Secret}, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, e := range []error{err, func() error { _, err := Parse([]byte(text)); return err }()} {
		if e == nil {
			t.Fatal("accepted")
		}
		for _, secret := range []string{mqttSecret, s3Secret, urlSecret} {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("problem leaks %q: %v", secret, e)
			}
		}
	}
}
