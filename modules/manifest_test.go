package modules

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleManifest is the manifest of DESIGN.md.
const exampleManifest = `name: threshold-alert
version: 1.2.0
abi: handler/v1            # or wasi-command (payload on stdin, metadata in env, stdout out)
triggers:
  - mqtt: sensors/+/temperature
  - every: 30s
capabilities:              # everything not listed is denied
  publish: ["alerts/{device}/#"]
  kv: { max_bytes: 65536 }
  clock: true
  random: false
config: { threshold: "30.5" }
limits: { memory: 4MiB, timeout: 50ms, max_publishes: 8, max_output: 16KiB, concurrency: 2 }
`

func TestParseExample(t *testing.T) {
	m, err := Parse([]byte(exampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		Name: "threshold-alert", Version: "1.2.0", ABI: ABIHandlerV1,
		Triggers:     []Trigger{{MQTT: "sensors/+/temperature"}, {Every: Duration(30 * time.Second)}},
		Capabilities: Capabilities{Publish: []string{"alerts/{device}/#"}, KV: &KV{MaxBytes: 65536}, Clock: true},
		Config:       map[string]string{"threshold": "30.5"},
		Limits:       Limits{Memory: 4 * MiB, Timeout: Duration(50 * time.Millisecond), MaxPublishes: 8, MaxOutput: 16 * KiB, Concurrency: 2},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", m, want)
	}
	if !m.MayPublish("alerts/dev-9/high", "dev-9") || m.MayPublish("alerts/dev-8/high", "dev-9") {
		t.Error("MayPublish does not expand {device}")
	}
}

func TestCanonicalJSONRoundTrip(t *testing.T) {
	m, err := Parse([]byte(exampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	j, err := m.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"name":"threshold-alert","version":"1.2.0","abi":"handler/v1","triggers":[{"mqtt":"sensors/+/temperature"},{"every":"30s"}],"capabilities":{"publish":["alerts/{device}/#"],"kv":{"max_bytes":65536},"clock":true},"config":{"threshold":"30.5"},"limits":{"memory":4194304,"timeout":"50ms","max_publishes":8,"max_output":16384,"concurrency":2}}`
	if string(j) != want {
		t.Fatalf("CanonicalJSON =\n%s\nwant\n%s", j, want)
	}
	// JSON is YAML: the signed form parses back to the same manifest.
	m2, err := Parse(j)
	if err != nil {
		t.Fatalf("canonical JSON does not parse: %v", err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
	}
}

// problemCases are manifests with what Parse must say about them (a field path and a
// fragment of the message). They also seed FuzzParse.
var problemCases = []struct {
	name, yaml string
	path, msg  string
}{
	{"bad size", "name: a\nversion: 1.0.0\nabi: handler/v1\nlimits: {memory: 4XB}", "limits.memory", `"4XB" is not a size`},
	{"unknown field", "name: a\nversion: 1.0.0\nabi: handler/v1\nsudo: true", "sudo", "unknown field"},
	{"unknown nested field", "name: a\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {network: true}", "capabilities.network", "unknown field"},
	{"missing name", "version: 1.0.0\nabi: handler/v1", "name", "is required"},
	{"bad name", "name: Alert_1\nversion: 1.0.0\nabi: handler/v1", "name", "must be"},
	{"bad version", "name: a\nversion: 1.2\nabi: handler/v1", "version", "not a semantic version"},
	{"unknown abi", "name: a\nversion: 1.0.0\nabi: wasi-reactor", "abi", "not an ABI"},
	{"both trigger kinds", "name: a\nversion: 1.0.0\nabi: handler/v1\ntriggers: [{mqtt: a/b, every: 1s}]", "triggers[0]", "both"},
	{"empty trigger", "name: a\nversion: 1.0.0\nabi: handler/v1\ntriggers: [{}]", "triggers[0]", "needs mqtt or every"},
	{"bad filter", "name: a\nversion: 1.0.0\nabi: handler/v1\ntriggers: [{mqtt: 'a/#/b'}]", "triggers[0].mqtt", ""},
	{"every too short", "name: a\nversion: 1.0.0\nabi: handler/v1\ntriggers: [{every: 1ms}]", "triggers[0].every", "out of range"},
	{"broker topic", "name: a\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {publish: ['$SYS/x']}", "capabilities.publish[0]", "belong to the broker"},
	{"kv zero", "name: a\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {kv: {max_bytes: 0}}", "capabilities.kv.max_bytes", "out of range"},
	{"bool as string", "name: a\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {clock: 'yes'}", "capabilities.clock", "true or false"},
	{"duplicate key", "name: a\nname: b\nversion: 1.0.0\nabi: handler/v1", "name", "given twice"},
	{"memory too small", "name: a\nversion: 1.0.0\nabi: handler/v1\nlimits: {memory: 1KiB}", "limits.memory", "out of range"},
	{"concurrency", "name: a\nversion: 1.0.0\nabi: handler/v1\nlimits: {concurrency: 65}", "limits.concurrency", "out of range"},
	{"int not number", "name: a\nversion: 1.0.0\nabi: handler/v1\nlimits: {max_publishes: many}", "limits.max_publishes", "whole number"},
	{"config value map", "name: a\nversion: 1.0.0\nabi: handler/v1\nconfig: {a: {b: c}}", "config.a", "must be a string"},
	{"output on handler", "name: a\nversion: 1.0.0\nabi: handler/v1\ncapabilities: {publish: [out]}\noutput: out", "output", "only wasi-command"},
	{"output not allowed", "name: a\nversion: 1.0.0\nabi: wasi-command\noutput: out", "output", "not allowed by capabilities.publish"},
	{"alias", "name: &n a\nversion: 1.0.0\nabi: handler/v1", "name", "anchors"},
	{"not a mapping", "- a\n- b", "", "must be a mapping"},
	{"two documents", "name: a\n---\nname: b", "", "more than one YAML document"},
	{"not YAML", "name: [a", "", "not valid YAML"},
}

func TestParseProblems(t *testing.T) {
	for _, c := range problemCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml))
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("error %v (%T) is not Problems", err, err)
			}
			for _, p := range ps {
				if p.Path == c.path && strings.Contains(p.Msg, c.msg) {
					return
				}
			}
			t.Fatalf("no problem at %q mentioning %q in: %v", c.path, c.msg, err)
		})
	}
}

func TestEveryProblemReported(t *testing.T) {
	_, err := Parse([]byte("name: A\nversion: x\nabi: y\nlimits: {memory: 4XB, timeout: forever}\nbogus: 1"))
	ps, _ := err.(Problems)
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Path] = true
	}
	for _, path := range []string{"name", "version", "abi", "limits.memory", "limits.timeout", "bogus"} {
		if !got[path] {
			t.Errorf("no problem at %s in %v", path, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "invalid manifest: ") {
		t.Errorf("message %q", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"65536": 65536, "64KiB": 64 * KiB, "4MiB": 4 * MiB, "1GiB": GiB, "16KB": 16000, "2MB": 2000000, "10B": 10, " 4 MiB ": 4 * MiB} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "4XB", "1.5MiB", "99999999999999999999", "9999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	// semver.org's precedence example, in order.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, _ := ParseVersion(order[i])
			b, err := ParseVersion(order[j])
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s vs %s = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	a, _ := ParseVersion("1.0.0+build.1")
	b, _ := ParseVersion("1.0.0+build.2")
	if a.Compare(b) != 0 {
		t.Error("build metadata must not affect precedence")
	}
	for _, bad := range []string{"1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "v1.0.0", "1.0.0-a..b"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
}
