package config

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFleetEnvNamesWhatTheCLIReads checks the fleet server's environment template: every
// line is a comment, blank, or KEY=value as systemd's EnvironmentFile reads it, and every
// variable it sets (commented out or not) is one the wasmfleet commands read or the unit
// uses, so an operator never fills in a setting that nothing reads.
func TestFleetEnvNamesWhatTheCLIReads(t *testing.T) {
	data, err := os.ReadFile("fleet.env")
	if err != nil {
		t.Fatal(err)
	}
	var cli []byte
	files, _ := filepath.Glob("../../cmd/wasmfleet/internal/cli/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cli = append(cli, b...)
	}
	unit, err := os.ReadFile("../systemd/wasmfleet.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("EnvironmentFile=/etc/wasmfleet/fleet.env")) {
		t.Error("wasmfleet.service does not read /etc/wasmfleet/fleet.env")
	}
	line := regexp.MustCompile(`^#?(WASMFLEET_[A-Z0-9_]+)=(.*)$`)
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		m := line.FindStringSubmatch(l)
		switch {
		case m != nil:
			seen++
			if !bytes.Contains(cli, []byte(`"`+m[1]+`"`)) && !bytes.Contains(unit, []byte(m[1])) {
				t.Errorf("fleet.env:%d: %s is read neither by the CLI nor by wasmfleet.service", n, m[1])
			}
			if strings.HasPrefix(m[2], `"`) || strings.HasPrefix(m[2], "'") {
				t.Errorf("fleet.env:%d: quoted value: systemd keeps quotes only around whole values; write it bare", n)
			}
		case l == "" || strings.HasPrefix(l, "#"):
		default:
			t.Errorf("fleet.env:%d: %q is neither a comment nor KEY=value", n, l)
		}
	}
	if seen < 10 {
		t.Fatalf("fleet.env sets only %d variables", seen)
	}
	for _, v := range []string{"WASMFLEET_ROLLOUT_KEY", "WASMFLEET_SERVE_FLAGS"} {
		if !bytes.Contains(unit, []byte(v)) {
			t.Errorf("wasmfleet.service does not use %s", v)
		}
	}
}
