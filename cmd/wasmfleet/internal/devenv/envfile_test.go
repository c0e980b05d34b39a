package devenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tricky is an EnvFile whose values need every kind of quoting.
func tricky() *EnvFile {
	return &EnvFile{
		S3Endpoint: "127.0.0.1:9000", S3Bucket: "fleet", S3Region: "us-east-1", S3AccessKey: "wasmfleet-dev",
		S3SecretKey: `it's $HOME "quoted" \ back`, S3Insecure: true,
		MQTTBrokers: "tcp://127.0.0.1:1883", MQTTUsername: "dev", MQTTPassword: "p'a's's",
		Dir: "/tmp/a dir/with spaces", Group: "dev", Trust: "/tmp/x/root.json", RootKey: "/k/root.key",
		ReleaseKey: "/k/release.key", RolloutKey: "/k/rollout.key", PasswordFile: "/k/password",
		AgentConfig: "/x/agent.yaml", Dashboard: "http://127.0.0.1:8080/", DashboardToken: "`whoami`;$(id)",
	}
}

func TestEnvFileRoundTrip(t *testing.T) {
	for _, e := range []*EnvFile{{}, tricky()} {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseEnvFile(b)
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}

// TestEnvFileIsShell: sh reads the file as ParseEnvFile does, exports the S3 and MQTT
// settings (which wasmfleet-agent reads) and nothing else (it refuses other WASMFLEET_
// variables).
func TestEnvFileIsShell(t *testing.T) {
	e := tricky()
	path := filepath.Join(t.TempDir(), "env")
	if err := e.Write(path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("env file mode: %v %v", st.Mode(), err)
	}
	script := `. "$1"; printf '%s\n' "$WASMFLEET_S3_SECRET_KEY" "$WASMFLEET_MQTT_PASSWORD" "$WASMFLEET_DEV_DIR" "$WASMFLEET_DEV_DASHBOARD_TOKEN"; env | grep '^WASMFLEET_' | cut -d= -f1 | sort`
	cmd := exec.Command("/bin/sh", "-c", script, "sh", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	want := strings.Join([]string{e.S3SecretKey, e.MQTTPassword, e.Dir, e.DashboardToken,
		"WASMFLEET_MQTT_BROKERS", "WASMFLEET_MQTT_PASSWORD", "WASMFLEET_MQTT_USERNAME",
		"WASMFLEET_S3_ACCESS_KEY", "WASMFLEET_S3_BUCKET", "WASMFLEET_S3_ENDPOINT", "WASMFLEET_S3_INSECURE",
		"WASMFLEET_S3_REGION", "WASMFLEET_S3_SECRET_KEY"}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("sh read:\n%s\nwant:\n%s", out, want)
	}
}

func TestEnvFileRefusesControlCharacters(t *testing.T) {
	for _, v := range []string{"a\nb", "a\rb", "tab\there", "nul\x00"} {
		e := &EnvFile{S3SecretKey: v}
		if _, err := e.Marshal(); err == nil || !strings.Contains(err.Error(), "WASMFLEET_S3_SECRET_KEY") {
			t.Errorf("%q: err %v, want a refusal naming the variable", v, err)
		}
	}
}

// malformedEnvFiles are files ParseEnvFile must refuse, with a word of the error; also
// the fuzz target's seeds.
var malformedEnvFiles = []struct{ name, text, want string }{
	{"unknown variable", "WASMFLEET_S3_ENDPOINTS='x'\n", "line 1: unknown variable WASMFLEET_S3_ENDPOINTS"},
	{"twice", "WASMFLEET_S3_BUCKET=a\nexport WASMFLEET_S3_BUCKET=b\n", "line 2: WASMFLEET_S3_BUCKET given twice"},
	{"no equals", "# c\nexport WASMFLEET_S3_BUCKET\n", "line 2: not NAME=VALUE"},
	{"bad name", "WASMFLEET S3=1\n", "is not a variable name"},
	{"unterminated quote", "WASMFLEET_S3_BUCKET='abc\n", "unterminated single quote"},
	{"dollar", "WASMFLEET_S3_BUCKET=$HOME\n", `character '$' needs quoting`},
	{"space", "WASMFLEET_S3_BUCKET=a b\n", `character ' ' needs quoting`},
	{"trailing comment", "WASMFLEET_S3_BUCKET='a' # c\n", "needs quoting"},
	{"double quotes", `WASMFLEET_S3_BUCKET="a"` + "\n", "needs quoting"},
	{"lone backslash", `WASMFLEET_S3_BUCKET=a\b` + "\n", "backslash"},
	{"backslash at end", `WASMFLEET_S3_BUCKET=a\` + "\n", "backslash"},
	{"not a bool", "WASMFLEET_S3_INSECURE=yes\n", "is not true or false"},
	{"too large", strings.Repeat("#", MaxEnvFileSize+1), "more than the"},
}

func TestParseEnvFileMalformed(t *testing.T) {
	for _, c := range malformedEnvFiles {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEnvFile([]byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one with %q", err, c.want)
			}
		})
	}
}

func TestParseEnvFileForms(t *testing.T) {
	got, err := ParseEnvFile([]byte("\r\n  # indented comment\r\n\texport WASMFLEET_S3_BUCKET=fleet\r\n" +
		`WASMFLEET_S3_SECRET_KEY=a'b c'\''d'` + "\nWASMFLEET_S3_INSECURE='false'\nWASMFLEET_S3_REGION=\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &EnvFile{S3Bucket: "fleet", S3SecretKey: "ab c'd"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestReadEnvFileMissing(t *testing.T) {
	if _, err := ReadEnvFile(filepath.Join(t.TempDir(), "env")); !os.IsNotExist(err) {
		t.Errorf("err %v, want one matching os.ErrNotExist", err)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	for _, c := range malformedEnvFiles {
		if len(c.text) < 4096 {
			f.Add([]byte(c.text))
		}
	}
	for _, e := range []*EnvFile{{}, tricky()} {
		b, err := e.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvFile(data)
		if err != nil {
			return
		}
		// What parses is written back (unless it holds a control character) and reads the same.
		b, err := e.Marshal()
		if err != nil {
			if !strings.Contains(err.Error(), "control character") {
				t.Fatalf("marshal: %v", err)
			}
			return
		}
		if len(b) > MaxEnvFileSize { // quoting made it longer than a file may be
			return
		}
		again, err := ParseEnvFile(b)
		if err != nil {
			t.Fatalf("what Marshal wrote does not parse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed it:\n%+v\n%+v", e, again)
		}
		if !bytes.HasPrefix(b, []byte("#")) {
			t.Fatal("no header")
		}
	})
}
