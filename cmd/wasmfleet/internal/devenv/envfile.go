package devenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// EnvFileName is the environment file's name in the dev directory.
const EnvFileName = "env"

// MaxEnvFileSize bounds what ParseEnvFile and ReadEnvFile accept.
const MaxEnvFileSize = 64 << 10

// EnvFile is what `wasmfleet dev` tells other programs about the environment it runs: the
// file DIR/env, written at every start. It is a shell script of assignments, so that
// `. .wasmfleet-dev/env` in a shell gives the same settings to wasmfleet, wasmfleet-agent
// and scripts; the wasmfleet CLI reads it with ParseEnvFile when it is given no S3 or MQTT
// settings.
//
// The S3 and MQTT settings carry the names wasmfleet and wasmfleet-agent read from the
// environment, and are exported. The rest names the dev keys, the trust file and the
// dashboard; those lines are not exported, because wasmfleet-agent refuses WASMFLEET_
// variables that are not its settings. Each field's tag is its variable.
type EnvFile struct {
	S3Endpoint  string `env:"WASMFLEET_S3_ENDPOINT,export"`
	S3Bucket    string `env:"WASMFLEET_S3_BUCKET,export"`
	S3Region    string `env:"WASMFLEET_S3_REGION,export"`
	S3AccessKey string `env:"WASMFLEET_S3_ACCESS_KEY,export"`
	S3SecretKey string `env:"WASMFLEET_S3_SECRET_KEY,export"`
	S3Insecure  bool   `env:"WASMFLEET_S3_INSECURE,export"`

	MQTTBrokers  string `env:"WASMFLEET_MQTT_BROKERS,export"`
	MQTTUsername string `env:"WASMFLEET_MQTT_USERNAME,export"`
	MQTTPassword string `env:"WASMFLEET_MQTT_PASSWORD,export"`

	Dir            string `env:"WASMFLEET_DEV_DIR"`
	Group          string `env:"WASMFLEET_DEV_GROUP"`
	Trust          string `env:"WASMFLEET_DEV_TRUST"`
	RootKey        string `env:"WASMFLEET_DEV_ROOT_KEY"`
	ReleaseKey     string `env:"WASMFLEET_DEV_RELEASE_KEY"`
	RolloutKey     string `env:"WASMFLEET_DEV_ROLLOUT_KEY"`
	PasswordFile   string `env:"WASMFLEET_DEV_PASSWORD_FILE"`
	AgentConfig    string `env:"WASMFLEET_DEV_AGENT_CONFIG"`
	Dashboard      string `env:"WASMFLEET_DEV_DASHBOARD"`
	DashboardToken string `env:"WASMFLEET_DEV_DASHBOARD_TOKEN"`
}

// envField is one variable of EnvFile.
type envField struct {
	name   string
	export bool
	index  int
}

var envFields = func() []envField {
	t := reflect.TypeFor[EnvFile]()
	out := make([]envField, t.NumField())
	for i := range out {
		tag := t.Field(i).Tag.Get("env")
		name, opt, _ := strings.Cut(tag, ",")
		out[i] = envField{name: name, export: opt == "export", index: i}
	}
	return out
}()

const envFileHeader = `# The wasmfleet dev environment, written by 'wasmfleet dev' at every start (do not edit).
# Run in the directory that holds it, wasmfleet publish, rollout, releases and devices use it
# when given no S3 or MQTT flags and no WASMFLEET_S3_* or WASMFLEET_MQTT_* variables.
# In a shell, '. .wasmfleet-dev/env' exports the S3 and MQTT settings (read by wasmfleet and
# wasmfleet-agent) and sets, without exporting them, the WASMFLEET_DEV_* variables below:
# wasmfleet-agent refuses WASMFLEET_ variables that are not its settings.
`

// Marshal writes the file's text: every variable, one assignment a line, single-quoted.
// A value holding a line break or another control character is refused: it could not be
// read back from one line.
func (e *EnvFile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envFileHeader)
	v := reflect.ValueOf(e).Elem()
	exported := true
	for _, f := range envFields {
		if exported && !f.export {
			b.WriteString("\n# Not exported: the dev keys (their password is in the password file), the trust file, the dashboard.\n")
			exported = false
		}
		fv := v.Field(f.index)
		var s string
		if fv.Kind() == reflect.Bool {
			s = strconv.FormatBool(fv.Bool())
		} else {
			s = fv.String()
		}
		if i := strings.IndexFunc(s, isControl); i >= 0 {
			return nil, fmt.Errorf("env file: %s holds a control character (%q) at %d", f.name, s[i], i)
		}
		if f.export {
			b.WriteString("export ")
		}
		b.WriteString(f.name)
		b.WriteByte('=')
		b.WriteString(shellQuote(s))
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// shellQuote single-quotes s for sh: a ' inside becomes '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Write writes the file atomically with mode 0600 (it holds the dev credentials).
func (e *EnvFile) Write(path string) error {
	b, err := e.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseEnvFile reads the text Marshal writes. It is strict: each line is blank, a comment
// (#), or NAME=VALUE, optionally after "export ", where NAME is one of EnvFile's variables,
// given at most once, and VALUE is a sequence of single-quoted strings, \' and characters
// that need no quoting in sh (letters, digits and _ . / : @ % + , = -). Variables not given
// keep their zero value. Errors name the line.
func ParseEnvFile(data []byte) (*EnvFile, error) {
	if len(data) > MaxEnvFileSize {
		return nil, fmt.Errorf("env file: %d bytes, more than the %d allowed", len(data), MaxEnvFileSize)
	}
	byName := map[string]envField{}
	for _, f := range envFields {
		byName[f.name] = f
	}
	e := &EnvFile{}
	v := reflect.ValueOf(e).Elem()
	seen := map[string]bool{}
	for n, line := range strings.Split(string(data), "\n") {
		lineNo := n + 1
		line = strings.TrimSuffix(line, "\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		rest, _ := strings.CutPrefix(trimmed, "export ")
		name, raw, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, fmt.Errorf("env file line %d: not NAME=VALUE", lineNo)
		}
		if !envNameRE.MatchString(name) {
			return nil, fmt.Errorf("env file line %d: %q is not a variable name", lineNo, truncate(name, 40))
		}
		f, known := byName[name]
		if !known {
			return nil, fmt.Errorf("env file line %d: unknown variable %s", lineNo, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("env file line %d: %s given twice", lineNo, name)
		}
		seen[name] = true
		val, err := shellUnquote(raw)
		if err != nil {
			return nil, fmt.Errorf("env file line %d: %s: %w", lineNo, name, err)
		}
		fv := v.Field(f.index)
		if fv.Kind() == reflect.Bool {
			bv, err := strconv.ParseBool(val)
			if err != nil {
				return nil, fmt.Errorf("env file line %d: %s: %q is not true or false", lineNo, name, truncate(val, 40))
			}
			fv.SetBool(bv)
			continue
		}
		fv.SetString(val)
	}
	return e, nil
}

// ReadEnvFile reads and parses the file at path. A missing file is an error matching
// os.ErrNotExist.
func ReadEnvFile(path string) (*EnvFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxEnvFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	e, err := ParseEnvFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// shellUnquote reads a value written by shellQuote, or one that sh would read the same way
// without quotes.
func shellUnquote(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", errors.New("unterminated single quote")
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '\\':
			if i+1 >= len(s) || s[i+1] != '\'' {
				return "", errors.New(`a backslash outside quotes may only escape a single quote`)
			}
			b.WriteByte('\'')
			i += 2
		case isBare(c):
			b.WriteByte(c)
			i++
		default:
			return "", fmt.Errorf("character %q needs quoting", c)
		}
	}
	return b.String(), nil
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_./:@%+,=-", c) >= 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
