package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
)

// redactedMark stands in for a secret wherever one would be printed.
const redactedMark = "[redacted]"

// Secret is a password or key. Every way of printing it (fmt verbs, JSON, YAML, text,
// slog) shows "[redacted]", or "" when it is empty; use string(s) to get the value.
//
// Why a type and not just Config.Redacted: the sections are printed on their own too
// (log.Interface("mqtt", cfg.MQTT)), and a type cannot be forgotten at a call site.
type Secret string

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return redactedMark
}

// String returns "[redacted]", or "" when s is empty.
func (s Secret) String() string { return s.redacted() }

// GoString is String quoted, for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.redacted()) }

// Format prints String for every verb (quoted for %q and %#v). Without it, a verb that
// does not suit a string, such as %d, would print the value of a Secret inside a struct.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.redacted()) }

func formatRedacted(f fmt.State, verb rune, text string) {
	if verb == 'q' || verb == 'v' && f.Flag('#') {
		text = strconv.Quote(text)
	}
	io.WriteString(f, text)
}

// MarshalText returns "[redacted]", or nothing when s is empty.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// MarshalJSON returns "[redacted]" as a JSON string, or "" when s is empty.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// MarshalYAML returns "[redacted]", or "" when s is empty.
func (s Secret) MarshalYAML() (any, error) { return s.redacted(), nil }

// LogValue returns "[redacted]", or "" when s is empty, for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// Redacted returns a copy of c that is safe to show: secrets are "[redacted]" (or ""
// when unset) and broker URLs lose any password. Slices are copied, not shared.
func (c Config) Redacted() Config {
	r := c
	r.Groups = clone(c.Groups)
	r.MQTT.Brokers = make([]string, len(c.MQTT.Brokers))
	for i, b := range c.MQTT.Brokers {
		r.MQTT.Brokers[i] = redactURL(b)
	}
	if c.MQTT.Brokers == nil {
		r.MQTT.Brokers = nil
	}
	r.MQTT.Password = Secret(c.MQTT.Password.redacted())
	r.S3.SecretKey = Secret(c.S3.SecretKey.redacted())
	r.Policy.AllowedTopics = clone(c.Policy.AllowedTopics)
	return r
}

func clone(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// redactURL hides the password of a URL with user information. Validate refuses such
// broker URLs, but an invalid configuration can still be printed.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return redactedMark // unparseable and may hold credentials: show nothing of it
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return s
}

// The printing methods below have value receivers so that a Config and a *Config print
// alike; each starts from Redacted.

// String lists the settings that are not zero as key=value pairs, secrets redacted.
func (c Config) String() string {
	r := c.Redacted()
	var b strings.Builder
	b.WriteString("config{")
	first := true
	for i := range table {
		s := &table[i]
		if s.isZero(&r) {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		v := s.value(&r).Interface()
		switch v := v.(type) {
		case string, Secret, []string:
			fmt.Fprintf(&b, "%s=%q", s.Key, v)
		default:
			fmt.Fprintf(&b, "%s=%v", s.Key, v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Format prints String for every verb, and GoString for %#v (quoted String for %q).
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	formatRedacted(f, verb, c.String())
}

// plain is Config without its methods, so that fmt and encoding/json can print a
// redacted copy field by field without calling back into Config's methods.
type plain Config

// GoString prints the redacted copy as Go syntax, for %#v.
func (c Config) GoString() string {
	s := fmt.Sprintf("%#v", plain(c.Redacted()))
	_, fields, _ := strings.Cut(s, "{")
	return "config.Config{" + fields
}

// MarshalJSON writes the redacted copy with the YAML keys (JSON is YAML, so the output
// of a configuration without secrets parses back to it).
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(plain(c.Redacted())) }

// MarshalYAML writes the redacted copy with the same keys and value syntax as the
// configuration file (sizes such as 4MiB, durations such as 30s).
func (c Config) MarshalYAML() (any, error) {
	r := c.Redacted()
	return yamlNode(reflect.ValueOf(r)), nil
}

func yamlNode(v reflect.Value) *yaml.Node {
	t := v.Type()
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t.Field(i).Tag.Get("yaml")}
		var val *yaml.Node
		switch x := f.Interface().(type) {
		case []string:
			val = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
			for _, s := range x {
				val.Content = append(val.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
			}
		case fmt.Stringer: // Size, Duration, Secret
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x.String()}
		case string:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
		case int:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
		case float64:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(x, 'g', -1, 64)}
		case bool:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
		default: // a section
			val = yamlNode(f)
		}
		n.Content = append(n.Content, key, val)
	}
	return n
}

// MarshalZerologObject logs the redacted copy with the YAML keys, sections as nested
// objects: log.Info().Object("config", cfg).
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	r := c.Redacted()
	zerologObject(e, reflect.ValueOf(r))
}

func zerologObject(e *zerolog.Event, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("yaml")
		switch x := v.Field(i).Interface().(type) {
		case []string:
			e.Strs(key, x)
		case fmt.Stringer: // Size, Duration, Secret
			e.Str(key, x.String())
		case string:
			e.Str(key, x)
		case int:
			e.Int(key, x)
		case float64:
			e.Float64(key, x)
		case bool:
			e.Bool(key, x)
		default: // a section
			d := zerolog.Dict()
			zerologObject(d, v.Field(i))
			e.Dict(key, d)
		}
	}
}
