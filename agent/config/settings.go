package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/wasmfleet/wasmfleet/modules"
)

// EnvPrefix starts the name of every environment variable Load reads.
const EnvPrefix = "WASMFLEET_"

// A Setting is one configuration key and the names it goes by. The list is derived from
// Config's `yaml` tags, so the file, the environment and the overrides cannot disagree.
type Setting struct {
	Key    string // the YAML path, also the override key: "mqtt.brokers"
	Env    string // the environment variable: "WASMFLEET_MQTT_BROKERS"
	Type   string // string, list (comma-separated outside YAML), int, number, bool, size or duration
	Secret bool   // never printed
	Doc    string // the comment on the key in example.yaml
}

// setting is a Setting and where its value lives in a Config.
type setting struct {
	Setting
	index []int // reflect field index path from Config
}

func (s *setting) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(s.index)
}

var (
	typeSecret   = reflect.TypeFor[Secret]()
	typeSize     = reflect.TypeFor[modules.Size]()
	typeDuration = reflect.TypeFor[modules.Duration]()
	typeStrings  = reflect.TypeFor[[]string]()
)

// table is every setting in struct order; byKey, byEnv and sections index it.
var (
	table    = buildTable(reflect.TypeFor[Config](), nil, "")
	byKey    = map[string]*setting{}
	byEnv    = map[string]*setting{}
	sections = map[string]bool{} // key paths of nested mappings: "mqtt", "s3", ...
)

func init() {
	for i := range table {
		s := &table[i]
		if byKey[s.Key] != nil || byEnv[s.Env] != nil {
			panic("config: two settings named " + s.Key + " / " + s.Env)
		}
		byKey[s.Key], byEnv[s.Env] = s, s
		for p := s.Key; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			sections[p] = true
		}
	}
}

func buildTable(t reflect.Type, index []int, prefix string) []setting {
	var out []setting
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("yaml")
		if name == "" || name == "-" {
			panic("config: field " + f.Name + " has no yaml tag")
		}
		key := join(prefix, name)
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, buildTable(f.Type, idx, key)...)
			continue
		}
		s := setting{Setting: Setting{
			Key: key,
			Env: EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_")),
		}, index: idx}
		switch f.Type {
		case typeSecret:
			s.Type, s.Secret = "string", true
		case typeSize:
			s.Type = "size"
		case typeDuration:
			s.Type = "duration"
		case typeStrings:
			s.Type = "list"
		default:
			switch f.Type.Kind() {
			case reflect.String:
				s.Type = "string"
			case reflect.Int:
				s.Type = "int"
			case reflect.Float64:
				s.Type = "number"
			case reflect.Bool:
				s.Type = "bool"
			default:
				panic(fmt.Sprintf("config: field %s has type %s, which settings cannot hold", key, f.Type))
			}
		}
		out = append(out, s)
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Settings lists every setting, in the order of Config's fields (and of example.yaml).
func Settings() []Setting {
	docs := exampleDocs()
	out := make([]Setting, len(table))
	for i, s := range table {
		out[i] = s.Setting
		out[i].Doc = docs[s.Key]
	}
	return out
}

// exampleDocs maps each key to the comments on it in example.yaml.
var exampleDocs = sync.OnceValue(func() map[string]string {
	docs := map[string]string{}
	var doc yaml.Node
	if err := yaml.Unmarshal(Example, &doc); err != nil || len(doc.Content) != 1 {
		return docs // TestExample fails loudly instead
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if v.Kind == yaml.MappingNode {
				walk(v, p)
				continue
			}
			docs[p] = commentText(k.HeadComment, k.LineComment, v.LineComment)
		}
	}
	walk(doc.Content[0], "")
	return docs
})

func commentText(comments ...string) string {
	var words []string
	for _, c := range comments {
		for _, line := range strings.Split(c, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
			if line != "" {
				words = append(words, line)
			}
		}
	}
	return strings.Join(words, " ")
}

// setString sets the setting from the text of an environment variable or an override.
// Lists are comma-separated, with spaces around items and empty items ignored.
func (s *setting) setString(c *Config, text string) error {
	v := s.value(c)
	switch s.Type {
	case "string":
		v.SetString(text)
	case "list":
		var items []string
		for _, it := range strings.Split(text, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		v.Set(reflect.ValueOf(items))
	case "int":
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", text)
		}
		v.SetInt(n)
	case "number":
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", text)
		}
		v.SetFloat(f)
	case "bool":
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("%q is not true or false", text)
		}
		v.SetBool(b)
	case "size":
		n, err := modules.ParseSize(text)
		if err != nil {
			return err
		}
		v.SetUint(uint64(n))
	case "duration":
		d, err := modules.ParseDuration(text)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	}
	return nil
}

// isZero reports whether the setting holds its zero value (an empty list counts).
func (s *setting) isZero(c *Config) bool {
	v := s.value(c)
	if v.Kind() == reflect.Slice {
		return v.Len() == 0
	}
	return v.IsZero()
}
