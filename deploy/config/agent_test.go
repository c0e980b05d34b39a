package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	agentconfig "github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/modules"
)

func template(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTemplateFilled: the template with the required settings filled in (here as the
// agent's flags would, through Load's overrides) is a valid configuration with the
// defaults for everything else.
func TestTemplateFilled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, template(t), 0o640); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := agentconfig.Load(path, nil, map[string]string{
		"device_id":    "pi-kitchen-1",
		"mqtt.brokers": "ssl://broker.example.com:8883",
		"s3.endpoint":  "s3.example.com",
		"s3.bucket":    "fleet-releases",
		"trust_root":   root,
	})
	if err != nil {
		t.Fatalf("the filled template does not load: %v", err)
	}
	want := agentconfig.Config{
		DeviceID:  "pi-kitchen-1",
		MQTT:      agentconfig.MQTT{Brokers: []string{"ssl://broker.example.com:8883"}},
		S3:        agentconfig.S3{Endpoint: "s3.example.com", Bucket: "fleet-releases"},
		TrustRoot: root,
		DataDir:   "/var/lib/wasmfleet",
	}
	want.SetDefaults()
	got, _ := json.Marshal(c)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) || c.MQTT.KeepAlive != modules.Duration(30*time.Second) {
		t.Errorf("filled template:\n%s\nwant\n%s", got, wantJSON)
	}
}

// TestTemplateUnfilled: as installed, the template asks for exactly the required settings,
// so `wasmfleet-agent --check` tells a new user what to fill in and nothing else.
func TestTemplateUnfilled(t *testing.T) {
	_, err := agentconfig.Parse(template(t))
	var ps agentconfig.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse(template) = %v, want Problems", err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Path)
	}
	// trust_root names /etc/wasmfleet/root.json, which a new device does not have yet.
	want := []string{"device_id", "mqtt.brokers", "s3.endpoint", "s3.bucket", "trust_root"}
	if _, err := os.Stat("/etc/wasmfleet/root.json"); err == nil {
		want = want[:4]
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems at %q, want %q:\n%v", got, want, err)
	}
}

// commented matches a commented-out setting: "  # key: value".
var commented = regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+:( .*)?)$`)

// TestTemplateHasEverySetting: with its commented-out settings restored, the template has
// exactly the agent's settings, each at its place, so it cannot fall behind agent/config.
func TestTemplateHasEverySetting(t *testing.T) {
	text := commented.ReplaceAll(template(t), []byte("$1$2"))
	var doc map[string]any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		t.Fatalf("the template with every setting uncommented is not YAML: %v\n%s", err, text)
	}
	var got []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			got = append(got, prefix+k)
		}
	}
	walk("", doc)
	var want []string
	for _, s := range agentconfig.Settings() {
		want = append(want, s.Key)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("template settings:\n%s\nagent/config settings:\n%s", strings.Join(got, " "), strings.Join(want, " "))
	}
}
