// Package modules holds the wasmfleet module format: the manifest (schema, parsing,
// validation, defaults), sizes, durations and semantic versions, and the device policy a
// manifest is checked against. The host-guest contract is in ABI.md beside this file; the
// guest SDKs and example handlers live under sdk/ and examples/.
//
// It does not sign, verify or run anything: see package signing and agent/sandbox.
package modules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// The ABIs a module may declare (see ABI.md).
const (
	ABIHandlerV1   = "handler/v1"
	ABIWASICommand = "wasi-command"
)

// MaxManifestSize bounds the manifest text accepted by Parse.
const MaxManifestSize = 64 << 10

// Defaults applied to limits a manifest leaves out.
const (
	DefaultMemory       = 16 * MiB
	DefaultTimeout      = Duration(100 * time.Millisecond)
	DefaultMaxPublishes = 16
	DefaultMaxOutput    = 64 * KiB
	DefaultConcurrency  = 1
)

// Manifest describes a module: what it is, when it runs, what it may do and within which
// limits. The zero value is not valid; use Parse, or Default for a module run with nothing
// granted.
type Manifest struct {
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	ABI          string            `json:"abi"`
	Triggers     []Trigger         `json:"triggers,omitempty"`
	Capabilities Capabilities      `json:"capabilities"`
	Output       string            `json:"output,omitempty"` // wasi-command: topic for stdout
	Config       map[string]string `json:"config,omitempty"`
	Limits       Limits            `json:"limits"`
}

// Trigger starts an event: an MQTT filter (wildcards and {device} allowed) or an interval.
// Exactly one field is set.
type Trigger struct {
	MQTT  string   `json:"mqtt,omitempty"`
	Every Duration `json:"every,omitempty"`
}

// Capabilities lists what a module may do; everything else is denied.
type Capabilities struct {
	Publish []string `json:"publish,omitempty"` // MQTT filters, {device} allowed
	KV      *KV      `json:"kv,omitempty"`      // nil: no key-value state
	Clock   bool     `json:"clock,omitempty"`
	Random  bool     `json:"random,omitempty"`
	Log     bool     `json:"log,omitempty"`
}

// KV grants persistent key-value state up to MaxBytes (keys plus values).
type KV struct {
	MaxBytes Size `json:"max_bytes"`
}

// Limits bound one instance of the module. Zero fields take the defaults above.
type Limits struct {
	Memory       Size     `json:"memory,omitempty"`
	Timeout      Duration `json:"timeout,omitempty"`
	MaxPublishes int      `json:"max_publishes,omitempty"`
	MaxOutput    Size     `json:"max_output,omitempty"`
	Concurrency  int      `json:"concurrency,omitempty"`
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxPublishes == 0 {
		l.MaxPublishes = DefaultMaxPublishes
	}
	if l.MaxOutput == 0 {
		l.MaxOutput = DefaultMaxOutput
	}
	if l.Concurrency == 0 {
		l.Concurrency = DefaultConcurrency
	}
	return l
}

// Default is the manifest of a module run without one: handler/v1, nothing granted, default
// limits.
func Default(name string) *Manifest {
	return &Manifest{Name: name, Version: "0.0.0", ABI: ABIHandlerV1}
}

// Problem is one thing wrong with a manifest, at a field path such as "limits.memory".
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Problems is every problem found in a manifest. It is the error Parse and Validate return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return "invalid manifest: " + strings.Join(lines, "; ")
}

func (ps *Problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Parse reads a manifest written as YAML (or JSON, which is YAML too), rejects unknown
// fields, and validates it. The error, if any, is a Problems listing everything wrong.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, Problems{{Msg: fmt.Sprintf("manifest is %d bytes, larger than %d", len(data), MaxManifestSize)}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, Problems{{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{Msg: "more than one YAML document"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var m Manifest
	var ps Problems
	d := decoder{ps: &ps}
	d.manifest(root, &m)
	for _, p := range m.problems() {
		if !d.has(p.Path) {
			ps = append(ps, p)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks a manifest built in code (Parse already does this).
func (m *Manifest) Validate() error { return Problems(m.problems()).err() }

// CanonicalJSON is the manifest as it is signed: JSON with keys in a fixed order (struct
// order, maps sorted), sizes as integers and durations as strings.
func (m *Manifest) CanonicalJSON() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	configKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// exampleDevice stands in for {device} when a pattern is checked.
const exampleDevice = "device-1"

func (m *Manifest) problems() Problems {
	var ps Problems
	switch {
	case m.Name == "":
		ps.add("name", "is required")
	case !nameRE.MatchString(m.Name):
		ps.add("name", "%q must be 1 to 63 of a-z, 0-9 and -, starting with a letter or digit", m.Name)
	}
	if m.Version == "" {
		ps.add("version", "is required")
	} else if _, err := ParseVersion(m.Version); err != nil {
		ps.add("version", "%v", err)
	}
	switch m.ABI {
	case ABIHandlerV1, ABIWASICommand:
	case "":
		ps.add("abi", "is required (%s or %s)", ABIHandlerV1, ABIWASICommand)
	default:
		ps.add("abi", "%q is not an ABI this agent knows (%s or %s)", m.ABI, ABIHandlerV1, ABIWASICommand)
	}
	for i, t := range m.Triggers {
		p := fmt.Sprintf("triggers[%d]", i)
		switch {
		case t.MQTT != "" && t.Every != 0:
			ps.add(p, "has both mqtt and every; a trigger is one of them")
		case t.MQTT != "":
			if err := topic.ValidateFilter(topic.Expand(t.MQTT, exampleDevice)); err != nil {
				ps.add(p+".mqtt", "%v", err)
			}
		case t.Every < Duration(100*time.Millisecond) || t.Every > Duration(24*time.Hour):
			ps.add(p+".every", "%s is out of range (100ms to 24h)", t.Every)
		}
	}
	for i, f := range m.Capabilities.Publish {
		p := fmt.Sprintf("capabilities.publish[%d]", i)
		if err := topic.ValidateFilter(topic.Expand(f, exampleDevice)); err != nil {
			ps.add(p, "%v", err)
		} else if strings.HasPrefix(f, "$") {
			ps.add(p, "%q: topics starting with $ belong to the broker", f)
		}
	}
	if kv := m.Capabilities.KV; kv != nil && (kv.MaxBytes == 0 || kv.MaxBytes > 16*MiB) {
		ps.add("capabilities.kv.max_bytes", "%s is out of range (1 byte to 16MiB)", kv.MaxBytes)
	}
	if m.Output != "" {
		out := topic.Expand(m.Output, exampleDevice)
		if err := topic.ValidateName(out); err != nil {
			ps.add("output", "%v", err)
		} else if !m.MayPublish(out, exampleDevice) {
			ps.add("output", "%q is not allowed by capabilities.publish", m.Output)
		}
		if m.ABI == ABIHandlerV1 {
			ps.add("output", "only wasi-command modules have an output topic; handlers call publish")
		}
	}
	keys := make([]string, 0, len(m.Config))
	for k := range m.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !configKeyRE.MatchString(k) {
			ps.add("config."+k, "key must be 1 to 64 of A-Z a-z 0-9 _ . -")
		}
		if len(m.Config[k]) > 4096 {
			ps.add("config."+k, "value is longer than 4096 bytes")
		}
	}
	l := m.Limits
	if l.Memory != 0 && (l.Memory < 64*KiB || l.Memory > 4*GiB) {
		ps.add("limits.memory", "%s is out of range (64KiB to 4GiB)", l.Memory)
	}
	if l.Timeout != 0 && (l.Timeout < Duration(time.Millisecond) || l.Timeout > Duration(time.Hour)) {
		ps.add("limits.timeout", "%s is out of range (1ms to 1h)", l.Timeout)
	}
	if l.MaxPublishes < 0 || l.MaxPublishes > 10000 {
		ps.add("limits.max_publishes", "%d is out of range (0 to 10000)", l.MaxPublishes)
	}
	if l.MaxOutput > 64*MiB {
		ps.add("limits.max_output", "%s is out of range (up to 64MiB)", l.MaxOutput)
	}
	if l.Concurrency < 0 || l.Concurrency > 64 {
		ps.add("limits.concurrency", "%d is out of range (1 to 64)", l.Concurrency)
	}
	return ps
}

// MayPublish reports whether the module may publish to topic name on device.
func (m *Manifest) MayPublish(name, device string) bool {
	for _, f := range m.Capabilities.Publish {
		if topic.Match(topic.Expand(f, device), name) {
			return true
		}
	}
	return false
}

// decoder walks a YAML node tree into a Manifest, recording a Problem for every node that
// does not fit instead of stopping at the first.
type decoder struct{ ps *Problems }

func (d decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	d.ps.add(path, "%s", msg)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}

// fields walks a mapping, calling the handler for each known key and recording unknown or
// repeated keys.
func (d decoder) fields(n *yaml.Node, path string, handlers map[string]func(*yaml.Node, string)) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "must be a mapping, not %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k, "keys must be plain strings")
			continue
		}
		if seen[k.Value] {
			d.fail(p, k, "is given twice")
			continue
		}
		seen[k.Value] = true
		h, ok := handlers[k.Value]
		if !ok {
			d.fail(p, k, "unknown field")
			continue
		}
		if v.Kind == yaml.AliasNode || v.Anchor != "" {
			d.fail(p, v, "YAML anchors and aliases are not supported")
			continue
		}
		h(v, p)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d decoder) str(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(p, n, "must be a string, not %s", kindName(n))
			return
		}
		*dst = n.Value
	}
}

func (d decoder) boolean(dst *bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(p, n, "must be true or false, not %s", kindName(n))
			return
		}
		*dst = n.Value == "true"
	}
}

func (d decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		v, err := strconv.ParseInt(n.Value, 10, 32)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(p, n, "must be a whole number, not %s", kindName(n))
			return
		}
		*dst = int(v)
	}
}

func (d decoder) size(dst *Size) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(p, n, "must be a size such as 4MiB, not %s", kindName(n))
			return
		}
		v, err := ParseSize(n.Value)
		if err != nil {
			d.fail(p, n, "%v", err)
			return
		}
		*dst = v
	}
}

func (d decoder) duration(dst *Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(p, n, "must be a duration such as 50ms, not %s", kindName(n))
			return
		}
		v, err := ParseDuration(n.Value)
		if err != nil {
			d.fail(p, n, "%v", err)
			return
		}
		*dst = v
	}
}

func (d decoder) strings(dst *[]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, p string) {
		if n.Kind != yaml.SequenceNode {
			d.fail(p, n, "must be a list of strings, not %s", kindName(n))
			return
		}
		*dst = make([]string, len(n.Content))
		for i, c := range n.Content {
			d.str(&(*dst)[i])(c, fmt.Sprintf("%s[%d]", p, i))
		}
	}
}

func (d decoder) manifest(n *yaml.Node, m *Manifest) {
	d.fields(n, "", map[string]func(*yaml.Node, string){
		"name":    d.str(&m.Name),
		"version": d.str(&m.Version),
		"abi":     d.str(&m.ABI),
		"output":  d.str(&m.Output),
		"triggers": func(n *yaml.Node, p string) {
			if n.Kind != yaml.SequenceNode {
				d.fail(p, n, "must be a list, not %s", kindName(n))
				return
			}
			m.Triggers = make([]Trigger, len(n.Content))
			for i, c := range n.Content {
				tp := fmt.Sprintf("%s[%d]", p, i)
				t := &m.Triggers[i]
				d.fields(c, tp, map[string]func(*yaml.Node, string){
					"mqtt":  d.str(&t.MQTT),
					"every": d.duration(&t.Every),
				})
				if t.MQTT == "" && t.Every == 0 && c.Kind == yaml.MappingNode && len(c.Content) == 0 {
					d.fail(tp, c, "needs mqtt or every")
				}
			}
		},
		"capabilities": func(n *yaml.Node, p string) {
			c := &m.Capabilities
			d.fields(n, p, map[string]func(*yaml.Node, string){
				"publish": d.strings(&c.Publish),
				"clock":   d.boolean(&c.Clock),
				"random":  d.boolean(&c.Random),
				"log":     d.boolean(&c.Log),
				"kv": func(n *yaml.Node, p string) {
					c.KV = &KV{}
					d.fields(n, p, map[string]func(*yaml.Node, string){"max_bytes": d.size(&c.KV.MaxBytes)})
				},
			})
		},
		"config": func(n *yaml.Node, p string) {
			if n.Kind != yaml.MappingNode {
				d.fail(p, n, "must be a mapping of strings, not %s", kindName(n))
				return
			}
			m.Config = map[string]string{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				kp := join(p, k.Value)
				if _, dup := m.Config[k.Value]; dup {
					d.fail(kp, k, "is given twice")
					continue
				}
				if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
					d.fail(kp, v, "must be a string, not %s", kindName(v))
					continue
				}
				m.Config[k.Value] = v.Value
			}
		},
		"limits": func(n *yaml.Node, p string) {
			l := &m.Limits
			d.fields(n, p, map[string]func(*yaml.Node, string){
				"memory":        d.size(&l.Memory),
				"timeout":       d.duration(&l.Timeout),
				"max_publishes": d.integer(&l.MaxPublishes),
				"max_output":    d.size(&l.MaxOutput),
				"concurrency":   d.integer(&l.Concurrency),
			})
		},
	})
}

func (d decoder) has(path string) bool {
	for _, p := range *d.ps {
		if p.Path == path {
			return true
		}
	}
	return false
}
