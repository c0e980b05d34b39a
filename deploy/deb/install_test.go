package deb

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The install tests run the real dpkg on the amd64 packages with --root (a temporary
// directory with an empty dpkg database) and --force-script-chrootless, so the maintainer
// scripts run on this machine with DPKG_ROOT set to that directory, which they put in front
// of every path they touch. The commands that would change this machine's users, files or
// services (getent, groupadd, useradd, chown, dpkg-statoverride, deb-systemd-invoke,
// systemctl) are stubs first in PATH that log their arguments; getent finds what the
// stubbed groupadd and useradd created (in $STUB_STATE), so a second run shows whether the
// scripts are idempotent. deb-systemd-helper logs, then runs the real one
// (init-system-helpers, Priority: required), which works inside $DPKG_ROOT: the tests see
// the links it makes there (enabled, masked).

// stubs writes the stub commands into a directory and returns it and the log file. With
// realHelper false, deb-systemd-helper only logs (for scripts run without a package).
func stubs(t *testing.T, realHelper bool) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "calls.log")
	logger := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$STUB_LOG\"\n"
	last := `for name; do :; done` // sets $name to the last argument
	scripts := map[string]string{
		// getent group|passwd NAME: found once the stubbed groupadd / useradd made NAME.
		"getent":   logger + `grep -qsx "$1 $2" "$STUB_STATE"` + "\n",
		"groupadd": logger + last + `; echo "group $name" >>"$STUB_STATE"` + "\n",
		"useradd":  logger + last + `; echo "passwd $name" >>"$STUB_STATE"` + "\n",
		// dpkg-statoverride --list PATH: no override (exit 1).
		"dpkg-statoverride":  logger + "exit 1\n",
		"deb-systemd-helper": logger,
	}
	if realHelper {
		scripts["deb-systemd-helper"] = logger + "exec /usr/bin/deb-systemd-helper \"$@\"\n"
	}
	for _, c := range []string{"chown", "deb-systemd-invoke", "systemctl"} {
		scripts[c] = logger
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

// dpkgRoot is a temporary root with an empty dpkg database, and the stubs.
type dpkgRoot struct {
	t   *testing.T
	dir string
	env []string
	log string
}

func newDpkgRoot(t *testing.T) *dpkgRoot {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &dpkgRoot{t: t, dir: root}
	// init-system-helpers, as installed in the root: postrm looks for it there before it
	// calls deb-systemd-helper (the stub, from PATH).
	r.write("/usr/bin/deb-systemd-helper", "#!/bin/sh\nexit 0\n", 0o755)
	stubDir, log := stubs(t, true)
	r.log = log
	r.env = []string{
		"PATH=" + stubDir + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"STUB_LOG=" + log,
		"STUB_STATE=" + filepath.Join(stubDir, "users"),
	}
	return r
}

// dpkg runs dpkg on the root and returns what it printed (the scripts' messages too). The
// dependencies (passwd, init-system-helpers) are not in the empty database; the stubs stand
// in for them.
func (r *dpkgRoot) dpkg(args ...string) string {
	r.t.Helper()
	base := []string{"--root=" + r.dir, "--force-script-chrootless", "--force-depends", "--force-not-root",
		"--log=" + filepath.Join(r.dir, "dpkg.log")}
	return must(r.t, ".", r.env, "dpkg", append(base, args...)...)
}

// wantCalls checks what the scripts called since the last check.
func (r *dpkgRoot) wantCalls(step string, want ...string) {
	r.t.Helper()
	b, err := os.ReadFile(r.log)
	if err != nil && !os.IsNotExist(err) {
		r.t.Fatal(err)
	}
	os.Remove(r.log)
	got := strings.TrimSpace(string(b))
	if got != strings.Join(want, "\n") {
		r.t.Errorf("%s: the scripts called\n  %s\nwant\n  %s", step, strings.ReplaceAll(got, "\n", "\n  "), strings.Join(want, "\n  "))
	}
}

func (r *dpkgRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r *dpkgRoot) write(p, content string, mode os.FileMode) {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Dir(r.path(p)), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.path(p), []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
}

func (r *dpkgRoot) read(p string) string {
	r.t.Helper()
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// wantExist checks which paths exist.
func (r *dpkgRoot) wantExist(step string, want map[string]bool) {
	r.t.Helper()
	for p, w := range want {
		if _, err := os.Lstat(r.path(p)); (err == nil) != w {
			r.t.Errorf("%s: %s exists: %v, want %v", step, p, err == nil, w)
		}
	}
}

// wantModes checks the permission bits (and directory bit) of paths.
func (r *dpkgRoot) wantModes(step string, want map[string]os.FileMode) {
	r.t.Helper()
	for p, mode := range want {
		fi, err := os.Stat(r.path(p))
		if err != nil {
			r.t.Errorf("%s: %v", step, err)
			continue
		}
		if fi.Mode()&(os.ModePerm|os.ModeDir) != mode {
			r.t.Errorf("%s: %s has mode %v, want %v", step, p, fi.Mode(), mode)
		}
	}
}

// unit says what deb-systemd-helper left for a unit: "enabled" (the multi-user.target.wants
// link to the installed unit), "masked" (a link to /dev/null in /etc/systemd/system, the
// enablement kept beside it), or "none" (no link at all).
func (r *dpkgRoot) unit(name string) string {
	r.t.Helper()
	wants, _ := os.Readlink(r.path("/etc/systemd/system/multi-user.target.wants/" + name))
	mask, _ := os.Readlink(r.path("/etc/systemd/system/" + name))
	switch {
	case mask == "/dev/null" && wants != "":
		return "masked"
	case mask == "" && wants == "/usr/lib/systemd/system/"+name:
		return "enabled"
	case mask == "" && wants == "":
		return "none"
	}
	return "wants -> " + wants + ", " + name + " -> " + mask
}

func (r *dpkgRoot) wantUnits(step string, want map[string]string) {
	r.t.Helper()
	for u, w := range want {
		if got := r.unit(u); got != w {
			r.t.Errorf("%s: %s: %s, want %s", step, u, got, w)
		}
	}
}

// wantInstalled checks dpkg's status of a package and its conffile.
func (r *dpkgRoot) wantInstalled(step, pkg, conffile string) {
	r.t.Helper()
	status := must(r.t, ".", nil, "dpkg", "--root="+r.dir, "--status", pkg)
	if !strings.Contains(status, "Status: install ok installed") || !strings.Contains(status, "Conffiles:\n "+conffile+" ") {
		r.t.Errorf("%s: dpkg --status %s:\n%s", step, pkg, status)
	}
}

// The calls both postinsts make for the user wasmfleet: the first time, and after.
var (
	makeUser = []string{
		"getent group wasmfleet",
		"groupadd --system wasmfleet",
		"getent passwd wasmfleet",
		"useradd --system --gid wasmfleet --home-dir /var/lib/wasmfleet --no-create-home --shell /usr/sbin/nologin --comment wasmfleet agent and fleet server wasmfleet",
	}
	userFound = []string{"getent group wasmfleet", "getent passwd wasmfleet"}
)

// enableCalls are the calls of either postinst for its unit (the unit was enabled before,
// or is new: was-enabled says yes to both).
func enableCalls(unit string) []string {
	return []string{
		"deb-systemd-helper unmask " + unit,
		"deb-systemd-helper --quiet was-enabled " + unit,
		"deb-systemd-helper enable " + unit,
	}
}

func agentConfigureCalls(root string, user []string) []string {
	calls := append(clone(user),
		"dpkg-statoverride --list /etc/wasmfleet/agent.yaml",
		"chown root:wasmfleet "+root+"/etc/wasmfleet/agent.yaml",
		"chown wasmfleet:wasmfleet "+root+"/var/lib/wasmfleet",
	)
	return append(calls, enableCalls("wasmfleet-agent.service")...)
}

func serverConfigureCalls(root string, user []string) []string {
	calls := append(clone(user), "chown wasmfleet:wasmfleet "+root+"/var/lib/wasmfleet-server")
	return append(calls, enableCalls("wasmfleet.service")...)
}

func clone(s []string) []string { return append([]string(nil), s...) }

// TestInstallRemovePurge: install, reinstall over a changed configuration, remove, install
// again and purge the amd64 agent package, checking the files, the unit's links and what the
// scripts asked of the system each time.
func TestInstallRemovePurge(t *testing.T) {
	deb := packages(t)["wasmfleet-agent"]["amd64"]
	r := newDpkgRoot(t)
	conf := "/etc/wasmfleet/agent.yaml"
	data := "/var/lib/wasmfleet"

	// Install: the user and group are made, the configuration is given to the group, the
	// data directory made (0700), the unit enabled. DPKG_ROOT is set, so systemd is not
	// asked to start anything.
	r.dpkg("--install", deb)
	r.wantCalls("install", agentConfigureCalls(r.dir, makeUser)...)
	r.wantModes("after install", map[string]os.FileMode{
		"/usr/bin/wasmfleet-agent": 0o755, conf: 0o640, data: 0o700 | os.ModeDir,
		"/usr/lib/systemd/system/wasmfleet-agent.service": 0o644,
	})
	r.wantUnits("after install", map[string]string{"wasmfleet-agent.service": "enabled"})
	r.wantInstalled("after install", "wasmfleet-agent", conf)

	// Reinstall (as an upgrade does) over a configuration the administrator changed: the
	// change is kept, the user is not made again.
	edited := "device_id: pi-1 # edited\n"
	r.write(conf, edited, 0o640)
	r.write(data+"/state.json", "{}", 0o600)
	r.dpkg("--force-confold", "--install", deb)
	r.wantCalls("reinstall", agentConfigureCalls(r.dir, userFound)...)
	if got := r.read(conf); got != edited {
		t.Errorf("reinstall replaced the edited configuration with:\n%s", got)
	}

	// Remove: the program and unit go; the configuration and the data stay; the unit is
	// masked (its enablement kept for a reinstall).
	r.dpkg("--remove", "wasmfleet-agent")
	r.wantCalls("remove", "deb-systemd-helper mask wasmfleet-agent.service")
	r.wantExist("after remove", map[string]bool{
		"/usr/bin/wasmfleet-agent": false, "/usr/lib/systemd/system/wasmfleet-agent.service": false,
		conf: true, data + "/state.json": true,
	})
	r.wantUnits("after remove", map[string]string{"wasmfleet-agent.service": "masked"})

	// Install again: the mask goes, the unit is enabled as before.
	r.dpkg("--force-confold", "--install", deb)
	r.wantCalls("install after remove", agentConfigureCalls(r.dir, userFound)...)
	r.wantUnits("install after remove", map[string]string{"wasmfleet-agent.service": "enabled"})

	// Purge: the configuration and the data go, and /etc/wasmfleet with them (dpkg removes
	// it, empty now), and the unit's links.
	r.dpkg("--purge", "wasmfleet-agent")
	r.wantCalls("purge",
		"deb-systemd-helper mask wasmfleet-agent.service",
		"deb-systemd-helper purge wasmfleet-agent.service",
		"deb-systemd-helper unmask wasmfleet-agent.service",
	)
	r.wantExist("after purge", map[string]bool{conf: false, data: false, "/etc/wasmfleet": false})
	r.wantUnits("after purge", map[string]string{"wasmfleet-agent.service": "none"})
}

// notStarted is what the fleet server's postinst says of the template fleet.env.
const notStarted = `wasmfleet: wasmfleet serve not started: fill in /etc/wasmfleet/fleet.env:
  WASMFLEET_ROLLOUT_KEY: /etc/wasmfleet/rollout.key does not exist (make it with 'wasmfleet keygen', root:wasmfleet 0640, or name a KMS URI)
  WASMFLEET_S3_ENDPOINT: empty
  WASMFLEET_MQTT_BROKERS: empty
  then 'systemctl start wasmfleet' (see /usr/share/doc/wasmfleet/README.md).
`

// TestBothPackages: the fleet server's package on a host that has the agent's too. The
// server comes first (so it makes the user, with the agent's very commands), the agent
// second; the server is configured, reinstalled, removed, installed again and purged while
// the agent stays; then the agent is purged while the server stays. Neither takes what the
// other needs: /etc/wasmfleet, the user, the other's configuration, data and unit.
func TestBothPackages(t *testing.T) {
	debs := packages(t)
	server, agent := debs["wasmfleet"]["amd64"], debs["wasmfleet-agent"]["amd64"]
	r := newDpkgRoot(t)
	env := "/etc/wasmfleet/fleet.env"
	key := "/etc/wasmfleet/rollout.key"
	state := "/var/lib/wasmfleet-server"
	agentFiles := map[string]bool{
		"/usr/bin/wasmfleet-agent": true, "/etc/wasmfleet/agent.yaml": true, "/var/lib/wasmfleet/state.json": true,
	}

	// The server first: the user and group are made, the state directory (0700), the unit
	// enabled but not started, and the postinst names what fleet.env still lacks.
	out := r.dpkg("--install", server)
	r.wantCalls("server install", serverConfigureCalls(r.dir, makeUser)...)
	if !strings.Contains(out, notStarted) {
		t.Errorf("server install printed\n%s\nwant it to contain\n%s", out, notStarted)
	}
	r.wantModes("after server install", map[string]os.FileMode{
		"/usr/bin/wasmfleet": 0o755, env: 0o600, state: 0o700 | os.ModeDir, "/etc/wasmfleet": 0o755 | os.ModeDir,
		"/usr/lib/systemd/system/wasmfleet.service": 0o644,
	})
	r.wantUnits("after server install", map[string]string{"wasmfleet.service": "enabled"})
	r.wantInstalled("after server install", "wasmfleet", env)

	// The agent second: the user is there already.
	r.dpkg("--install", agent)
	r.wantCalls("agent install", agentConfigureCalls(r.dir, userFound)...)
	r.write("/var/lib/wasmfleet/state.json", "{}", 0o600)
	r.wantUnits("after agent install", map[string]string{"wasmfleet.service": "enabled", "wasmfleet-agent.service": "enabled"})
	r.wantModes("after agent install", map[string]os.FileMode{env: 0o600, "/etc/wasmfleet/agent.yaml": 0o640})

	// fleet.env filled in (a quoted value, as systemd allows), the key file made: a
	// reinstall keeps the file and says nothing more.
	filled := r.read(env)
	for k, v := range map[string]string{
		"WASMFLEET_S3_ENDPOINT":  `"s3.example.net:9000"`,
		"WASMFLEET_MQTT_BROKERS": "ssl://mqtt.example.net:8883",
	} {
		filled = strings.Replace(filled, "\n"+k+"=\n", "\n"+k+"="+v+"\n", 1)
	}
	r.write(env, filled, 0o600)
	r.write(key, "(an encrypted key)\n", 0o640)
	out = r.dpkg("--force-confold", "--install", server)
	r.wantCalls("server reinstall", serverConfigureCalls(r.dir, userFound)...)
	if strings.Contains(out, "wasmfleet serve not started") {
		t.Errorf("server reinstall with fleet.env filled in printed\n%s", out)
	}
	if got := r.read(env); got != filled {
		t.Errorf("reinstall replaced the filled-in fleet.env with:\n%s", got)
	}
	r.wantModes("after server reinstall", map[string]os.FileMode{env: 0o600})

	// Remove the server: its program and unit go, fleet.env, the key and the state directory
	// stay, its unit is masked; the agent is untouched.
	r.dpkg("--remove", "wasmfleet")
	r.wantCalls("server remove", "deb-systemd-helper mask wasmfleet.service")
	r.wantExist("after server remove", merge(agentFiles, map[string]bool{
		"/usr/bin/wasmfleet": false, "/usr/lib/systemd/system/wasmfleet.service": false,
		env: true, key: true, state: true,
	}))
	r.wantUnits("after server remove", map[string]string{"wasmfleet.service": "masked", "wasmfleet-agent.service": "enabled"})

	// Install it again: unmasked, enabled, and (fleet.env being filled in) nothing to say.
	out = r.dpkg("--install", server)
	r.wantCalls("server install after remove", serverConfigureCalls(r.dir, userFound)...)
	if strings.Contains(out, "wasmfleet serve not started") {
		t.Errorf("server install after remove printed\n%s", out)
	}
	r.wantUnits("after server install after remove", map[string]string{"wasmfleet.service": "enabled"})

	// Purge the server: fleet.env and the state directory go, and its unit's links; the key
	// (the administrator's file), /etc/wasmfleet and everything of the agent's stay.
	r.dpkg("--purge", "wasmfleet")
	r.wantCalls("server purge",
		"deb-systemd-helper mask wasmfleet.service",
		"deb-systemd-helper purge wasmfleet.service",
		"deb-systemd-helper unmask wasmfleet.service",
	)
	r.wantExist("after server purge", merge(agentFiles, map[string]bool{env: false, state: false, key: true}))
	r.wantUnits("after server purge", map[string]string{"wasmfleet.service": "none", "wasmfleet-agent.service": "enabled"})

	// The server again, then purge the agent: the server's files, key and unit stay.
	r.dpkg("--install", server)
	r.wantCalls("server install after purge", serverConfigureCalls(r.dir, userFound)...)
	r.dpkg("--purge", "wasmfleet-agent")
	r.wantCalls("agent purge",
		"deb-systemd-helper mask wasmfleet-agent.service",
		"deb-systemd-helper purge wasmfleet-agent.service",
		"deb-systemd-helper unmask wasmfleet-agent.service",
	)
	r.wantExist("after agent purge", map[string]bool{
		"/etc/wasmfleet/agent.yaml": false, "/var/lib/wasmfleet": false, "/usr/bin/wasmfleet-agent": false,
		"/usr/bin/wasmfleet": true, env: true, key: true, state: true,
	})
	r.wantUnits("after agent purge", map[string]string{"wasmfleet.service": "enabled", "wasmfleet-agent.service": "none"})
	r.wantModes("after agent purge", map[string]os.FileMode{env: 0o600, "/etc/wasmfleet": 0o755 | os.ModeDir})

	// Last, without the key: purging the server leaves nothing of either package.
	if err := os.Remove(r.path(key)); err != nil {
		t.Fatal(err)
	}
	r.dpkg("--purge", "wasmfleet")
	r.wantCalls("last purge",
		"deb-systemd-helper mask wasmfleet.service",
		"deb-systemd-helper purge wasmfleet.service",
		"deb-systemd-helper unmask wasmfleet.service",
	)
	filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "wasmfleet") && !strings.HasPrefix(p, r.path("/var/lib/dpkg")) {
			t.Errorf("after both purges: %s is still there", strings.TrimPrefix(p, r.dir))
		}
		return nil
	})
}

func merge(a, b map[string]bool) map[string]bool {
	m := map[string]bool{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// TestServerPostinstReadsFleetEnv: what the fleet server's postinst makes of fleet.env, run
// directly (as dpkg would, with DPKG_ROOT) on one file after another. It says nothing when
// the rollout key exists (or is a KMS URI) and the bucket and broker are set; otherwise it
// names each thing missing. Values are read as systemd reads them, never run.
func TestServerPostinstReadsFleetEnv(t *testing.T) {
	template, err := os.ReadFile("../config/fleet.env")
	if err != nil {
		t.Fatal(err)
	}
	const (
		head = "wasmfleet: wasmfleet serve not started: fill in /etc/wasmfleet/fleet.env:\n"
		tail = "  then 'systemctl start wasmfleet' (see /usr/share/doc/wasmfleet/README.md).\n"
		good = "WASMFLEET_ROLLOUT_KEY=/etc/wasmfleet/rollout.key\nWASMFLEET_S3_ENDPOINT=s3:9000\nWASMFLEET_S3_BUCKET=b\nWASMFLEET_MQTT_BROKERS=tcp://mqtt:1883\n"
	)
	noKey := "  WASMFLEET_ROLLOUT_KEY: /etc/wasmfleet/rollout.key does not exist (make it with 'wasmfleet keygen', root:wasmfleet 0640, or name a KMS URI)\n"
	for _, c := range []struct {
		name, env string
		key       bool // /etc/wasmfleet/rollout.key exists
		want      string
	}{
		{"template", string(template), false, head + noKey + "  WASMFLEET_S3_ENDPOINT: empty\n  WASMFLEET_MQTT_BROKERS: empty\n" + tail},
		{"template with the key", string(template), true, head + "  WASMFLEET_S3_ENDPOINT: empty\n  WASMFLEET_MQTT_BROKERS: empty\n" + tail},
		{"filled in", good, true, ""},
		{"no key file", good, false, head + noKey + tail},
		{"no fleet.env", "", false, head + "  WASMFLEET_ROLLOUT_KEY: empty (an encrypted key file from 'wasmfleet keygen', or a KMS URI)\n" +
			"  WASMFLEET_S3_ENDPOINT: empty\n  WASMFLEET_S3_BUCKET: empty\n  WASMFLEET_MQTT_BROKERS: empty\n" + tail},
		{"KMS key", good + "WASMFLEET_ROLLOUT_KEY=awskms:///alias/wasmfleet-rollout\n", false, ""},
		{"relative key", good + "WASMFLEET_ROLLOUT_KEY=rollout.key\n", true,
			head + "  WASMFLEET_ROLLOUT_KEY: rollout.key is not an absolute path nor a KMS URI\n" + tail},
		{"quotes and blanks", "WASMFLEET_ROLLOUT_KEY = '/etc/wasmfleet/rollout.key'  \nWASMFLEET_S3_ENDPOINT=\"s3:9000\"\n" +
			"  WASMFLEET_S3_BUCKET=b\nWASMFLEET_MQTT_BROKERS=\"\"\n", true, head + "  WASMFLEET_MQTT_BROKERS: empty\n" + tail},
		{"the last assignment counts", good + "WASMFLEET_S3_ENDPOINT=\n", true, head + "  WASMFLEET_S3_ENDPOINT: empty\n" + tail},
		{"commented out", good + "#WASMFLEET_S3_BUCKET=x\nXWASMFLEET_S3_BUCKET=\n", true, ""},
		{"a value that is not shell", good + "WASMFLEET_SERVE_FLAGS=--http 127.0.0.1:8080 $(touch @ROOT@/ran) `touch @ROOT@/ran`\n", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if c.env != "" {
				if err := os.MkdirAll(filepath.Join(root, "etc/wasmfleet"), 0o755); err != nil {
					t.Fatal(err)
				}
				env := strings.ReplaceAll(c.env, "@ROOT@", root)
				if err := os.WriteFile(filepath.Join(root, "etc/wasmfleet/fleet.env"), []byte(env), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if c.key {
				if err := os.WriteFile(filepath.Join(root, "etc/wasmfleet/rollout.key"), []byte("k"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			stubDir, log := stubs(t, false)
			cmd := []string{"PATH=" + stubDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "STUB_LOG=" + log,
				"STUB_STATE=" + filepath.Join(stubDir, "users"), "DPKG_ROOT=" + root}
			out := must(t, ".", cmd, "sh", "scripts/server.postinst", "configure", "")
			if out != c.want {
				t.Errorf("postinst printed\n%s\nwant\n%s", out, c.want)
			}
			if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
				t.Error("the postinst ran a command from fleet.env")
			}
		})
	}
}
