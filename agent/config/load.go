package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration file.
const MaxFileSize = 256 << 10

// maxSecretSize bounds a password_file or secret_key_file.
const maxSecretSize = 64 << 10

// otherEnv are WASMFLEET_ variables that are not settings but belong to other wasmfleet
// programs, so Load does not call them mistakes.
var otherEnv = map[string]bool{
	"WASMFLEET_CONFIG":       true, // the configuration file's path, for the command to read
	"WASMFLEET_KEY_PASSWORD": true, // the fleet CLI's signing-key password
}

// Where a value came from; a later source overrides an earlier one.
const (
	fromFile = 1 + iota
	fromEnv
	fromOverride
)

// Parse reads a configuration file's text as the whole configuration: it decodes it
// strictly (unknown keys and wrong types are problems), applies the defaults, validates,
// and reads the secret files it names. The error, if any, is a Problems listing everything
// wrong, each at its key path.
func Parse(data []byte) (*Config, error) {
	return build(data, nil, nil)
}

// Load reads the configuration from the file at path (none if path is ""), then from the
// environment (WASMFLEET_* variables in env, given as os.Environ gives them), then from
// overrides (key path to value, such as "device_id" -> "pi-1"; the agent's flags fill
// it). Each source overrides the ones before it, setting by setting. Then it applies the
// defaults, validates, and reads password_file and secret_key_file.
//
// Environment variables are named EnvPrefix plus the key path in upper case with dots
// as underscores (see Settings). An empty one is ignored, one given twice takes the later
// value (as exec.Cmd.Env does), and one that names no setting is a problem. In the
// environment and in overrides, lists are comma-separated and other values are written
// as in the file.
//
// Setting a secret in a later source replaces its *_file form from an earlier one, and
// the other way round; both in one source is a problem.
//
// A file that cannot be read is an error wrapping the os error; anything wrong with the
// configuration is a Problems.
func Load(path string, env []string, overrides map[string]string) (*Config, error) {
	var data []byte
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		defer f.Close()
		data, err = io.ReadAll(io.LimitReader(f, MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("read configuration %s: %w", path, err)
		}
	}
	return build(data, env, overrides)
}

// sources records where each setting got its value.
type sources struct {
	level  map[string]int    // setting key -> fromFile, fromEnv or fromOverride
	origin map[string]string // key path (a list item too) -> "line 4", "from WASMFLEET_X"
}

func (src *sources) set(key string, level int, origin string) {
	src.level[key] = level
	for p := range src.origin {
		if p == key || strings.HasPrefix(p, key+"[") {
			delete(src.origin, p)
		}
	}
	src.origin[key] = origin
}

// where says where the value at path came from, or "".
func (src *sources) where(path string) string {
	if o, ok := src.origin[path]; ok {
		return o
	}
	if i := strings.IndexByte(path, '['); i > 0 {
		return src.origin[path[:i]]
	}
	return ""
}

func build(data []byte, env []string, overrides map[string]string) (*Config, error) {
	c := &Config{}
	src := &sources{level: map[string]int{}, origin: map[string]string{}}
	var ps Problems

	if !decodeFile(data, c, src, &ps) {
		return nil, ps // nothing more to say about a file that is not a configuration
	}

	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || value == "" || otherEnv[name] {
			continue
		}
		s := byEnv[name]
		if s == nil {
			ps.add("", fmt.Sprintf("environment variable %s is not a setting", name))
			continue
		}
		if err := s.setString(c, value); err != nil {
			ps.add(s.Key, fmt.Sprintf("%v (from %s)", err, name))
			continue
		}
		src.set(s.Key, fromEnv, "from "+name)
	}

	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := byKey[k]
		if s == nil {
			ps.add(k, "is not a setting (in overrides)")
			continue
		}
		if err := s.setString(c, overrides[k]); err != nil {
			ps.add(k, fmt.Sprintf("%v (from overrides)", err))
			continue
		}
		src.set(k, fromOverride, "from overrides")
	}

	for _, pair := range [][2]*setting{
		{byKey["mqtt.password"], byKey["mqtt.password_file"]},
		{byKey["s3.secret_key"], byKey["s3.secret_key_file"]},
	} {
		inline, file := pair[0], pair[1]
		if inline.isZero(c) || file.isZero(c) {
			continue
		}
		switch li, lf := src.level[inline.Key], src.level[file.Key]; {
		case li > lf:
			file.value(c).SetString("")
		case lf > li:
			inline.value(c).SetString("")
		default:
			ps.add(file.Key, fmt.Sprintf("set %s or %s, not both", inline.Key, file.Key))
		}
	}

	c.SetDefaults()
	if err := c.Validate(); err != nil {
		for _, p := range err.(Problems) {
			if ps.has(p.Path) {
				continue // already said what is wrong there, more precisely
			}
			if o := src.where(p.Path); o != "" {
				p.Msg += " (" + o + ")"
			}
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}

	if c.MQTT.PasswordFile != "" {
		s, err := readSecret(c.MQTT.PasswordFile)
		if err != nil {
			ps.add("mqtt.password_file", err.Error())
		}
		c.MQTT.Password = s
	}
	if c.S3.SecretKeyFile != "" {
		s, err := readSecret(c.S3.SecretKeyFile)
		if err != nil {
			ps.add("s3.secret_key_file", err.Error())
		}
		c.S3.SecretKey = s
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return c, nil
}

// readSecret reads a secret file, without one trailing newline (\n or \r\n).
func readSecret(path string) (Secret, error) {
	b, err := readFile(path, maxSecretSize)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	if len(s) < len(b) {
		s = strings.TrimSuffix(s, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%q is empty", path)
	}
	return Secret(s), nil
}

// readFile reads a regular file of at most max bytes. Its errors name the path.
func readFile(path string, max int64) ([]byte, error) {
	// Stat first: opening a FIFO would block until something writes to it.
	if fi, err := os.Stat(path); err != nil {
		return nil, fileError(path, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fileError(path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%q is larger than %d bytes", path, max)
	}
	return b, nil
}

func fileError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%q does not exist", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%q cannot be read: permission denied", path)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%q cannot be read: %v", path, err)
}

// decodeFile walks the YAML of a configuration file into c, recording a problem for every
// node that does not fit instead of stopping at the first. It returns false if the text
// is not a configuration at all (not YAML, not a mapping).
func decodeFile(data []byte, c *Config, src *sources, ps *Problems) bool {
	if len(data) > MaxFileSize {
		ps.add("", fmt.Sprintf("the file is %d bytes, larger than %d", len(data), MaxFileSize))
		return false
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // an empty file is an empty configuration
			return true
		}
		ps.add("", "not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		ps.add("", "more than one YAML document")
		return false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return true
	}
	if root.Kind != yaml.MappingNode {
		ps.add("", fmt.Sprintf("the configuration must be a mapping of settings, not %s (line %d)", kindName(root), root.Line))
		return false
	}
	d := decoder{c: c, src: src, ps: ps}
	d.mapping(root, "")
	return true
}

type decoder struct {
	c   *Config
	src *sources
	ps  *Problems
}

func (d decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	d.ps.add(path, msg)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	if isNull(n) {
		return "null"
	}
	return strconv.Quote(n.Value)
}

// mapping decodes the mapping at path: each key is a setting or a section. A null
// setting or section is left unset.
func (d decoder) mapping(n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "must be a mapping, not %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(path, k, "keys must be plain strings, not %s", kindName(k))
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			d.fail(p, k, "is given twice")
			continue
		}
		seen[k.Value] = true
		s := byKey[p]
		if s == nil && !sections[p] {
			d.fail(p, k, "unknown field%s", suggest(k.Value))
			continue
		}
		if v.Kind == yaml.AliasNode || v.Anchor != "" || k.Anchor != "" {
			d.fail(p, v, "YAML anchors and aliases are not supported")
			continue
		}
		if isNull(v) {
			continue
		}
		if s == nil {
			d.mapping(v, p)
			continue
		}
		d.leaf(s, v, p)
	}
}

// suggest names the settings an unknown key may have meant: the same name elsewhere.
func suggest(name string) string {
	var alts []string
	for _, s := range table {
		if s.Key == name || strings.HasSuffix(s.Key, "."+name) {
			alts = append(alts, s.Key)
		}
	}
	if len(alts) == 0 {
		return ""
	}
	return " (did you mean " + strings.Join(alts, " or ") + "?)"
}

func (d decoder) leaf(s *setting, n *yaml.Node, p string) {
	v := s.value(d.c)
	if s.Type == "list" {
		if n.Kind != yaml.SequenceNode {
			d.fail(p, n, "must be a list of strings, not %s", kindName(n))
			return
		}
		var items []string // nil when empty, as from the environment
		if len(n.Content) > 0 {
			items = make([]string, len(n.Content))
		}
		for i, c := range n.Content {
			ip := fmt.Sprintf("%s[%d]", p, i)
			if c.Kind != yaml.ScalarNode || isNull(c) {
				d.fail(ip, c, "must be a string, not %s", kindName(c))
				continue
			}
			items[i] = c.Value
			d.src.origin[ip] = fmt.Sprintf("line %d", c.Line)
		}
		v.Set(reflect.ValueOf(items))
		d.src.level[s.Key] = fromFile
		d.src.origin[p] = fmt.Sprintf("line %d", n.Line)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(p, n, "must be %s, not %s", typeName[s.Type], kindName(n))
		return
	}
	switch s.Type {
	case "string":
		v.SetString(n.Value)
	case "int":
		i, err := strconv.ParseInt(n.Value, 10, 32)
		if n.Tag != "!!int" || err != nil {
			d.fail(p, n, "must be a whole number, not %s", kindName(n))
			return
		}
		v.SetInt(i)
	case "number":
		f, err := strconv.ParseFloat(n.Value, 64)
		if (n.Tag != "!!int" && n.Tag != "!!float") || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(p, n, "must be a number, not %s", kindName(n))
			return
		}
		v.SetFloat(f)
	case "bool":
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(p, n, "must be true or false, not %s", kindName(n))
			return
		}
		v.SetBool(b)
	case "size", "duration":
		if err := s.setString(d.c, n.Value); err != nil {
			d.fail(p, n, "%v", err)
			return
		}
	}
	d.src.level[s.Key] = fromFile
	d.src.origin[p] = fmt.Sprintf("line %d", n.Line)
}

var typeName = map[string]string{
	"string":   "a string",
	"list":     "a list of strings",
	"int":      "a whole number",
	"number":   "a number",
	"bool":     "true or false",
	"size":     "a size such as 4MiB",
	"duration": "a duration such as 30s",
}
