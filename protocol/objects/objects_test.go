package objects

import "testing"

func TestKeys(t *testing.T) {
	for _, c := range []struct {
		name, version string
		release       string
		module        string
	}{
		{"threshold-alert", "1.2.0", "releases/threshold-alert/1.2.0/release.dsse.json", "releases/threshold-alert/1.2.0/module.wasm"},
		{"echo", "0.1.0-rc.1+build.7", "releases/echo/0.1.0-rc.1+build.7/release.dsse.json", "releases/echo/0.1.0-rc.1+build.7/module.wasm"},
	} {
		r, err := ReleaseKey(c.name, c.version)
		if err != nil || r != c.release {
			t.Errorf("ReleaseKey(%q, %q) = %q, %v; want %q", c.name, c.version, r, err, c.release)
		}
		m, err := ModuleKey(c.name, c.version)
		if err != nil || m != c.module {
			t.Errorf("ModuleKey(%q, %q) = %q, %v; want %q", c.name, c.version, m, err, c.module)
		}
	}
	if TrustKey != "trust/root.json" {
		t.Errorf("TrustKey = %q", TrustKey)
	}
	if k, err := RolloutKey("r-42"); err != nil || k != "rollouts/r-42.json" {
		t.Errorf("RolloutKey = %q, %v", k, err)
	}
}

func TestKeysRefuseEscapes(t *testing.T) {
	for _, c := range []struct{ name, version string }{
		{"", "1.0.0"},
		{"a", ""},
		{"..", "1.0.0"},
		{"a", "."},
		{"a/b", "1.0.0"},
		{"a", "1.0.0/../../trust"},
		{`a\b`, "1.0.0"},
		{"a\x00", "1.0.0"},
		{"a\n", "1.0.0"},
		{string(make([]byte, MaxSegment+1)), "1.0.0"},
	} {
		if k, err := ReleaseKey(c.name, c.version); err == nil {
			t.Errorf("ReleaseKey(%q, %q) = %q, want an error", c.name, c.version, k)
		}
		if k, err := ModuleKey(c.name, c.version); err == nil {
			t.Errorf("ModuleKey(%q, %q) = %q, want an error", c.name, c.version, k)
		}
	}
	if k, err := RolloutKey("../x"); err == nil {
		t.Errorf("RolloutKey(../x) = %q, want an error", k)
	}
}
