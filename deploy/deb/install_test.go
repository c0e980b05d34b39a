package deb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The install test runs the real dpkg on the amd64 package with --root (a temporary
// directory with an empty dpkg database) and --force-script-chrootless, so the maintainer
// scripts run on this machine with DPKG_ROOT set to that directory, which they put in front
// of every path they touch. The commands that would change this machine's users, files or
// services (getent, groupadd, useradd, chown, dpkg-statoverride, deb-systemd-helper,
// deb-systemd-invoke, systemctl) are stubs first in PATH that log their arguments; getent
// finds what the stubbed groupadd and useradd created (in $STUB_STATE), so a second run shows whether the
// scripts are idempotent.

// stubs writes the stub commands into a directory and returns it and the log file.
func stubs(t *testing.T) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "calls.log")
	logger := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$STUB_LOG\"\n"
	last := `for name; do :; done` // sets $name to the last argument
	scripts := map[string]string{
		// getent group|passwd NAME: found once the stubbed groupadd / useradd made NAME.
		"getent":   logger + `grep -qx "$1 $2" "$STUB_STATE"` + "\n",
		"groupadd": logger + last + `; echo "group $name" >>"$STUB_STATE"` + "\n",
		"useradd":  logger + last + `; echo "passwd $name" >>"$STUB_STATE"` + "\n",
		// dpkg-statoverride --list PATH: no override (exit 1).
		"dpkg-statoverride": logger + "exit 1\n",
	}
	for _, c := range []string{"chown", "deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		scripts[c] = logger
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

// TestInstallRemovePurge: install, reinstall over a changed configuration, remove and purge
// the amd64 package, checking the files and what the scripts asked of the system each time.
func TestInstallRemovePurge(t *testing.T) {
	deb := packages(t)["amd64"]
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
	// init-system-helpers, as installed in the root: postrm looks for it there before it
	// calls deb-systemd-helper (the stub, from PATH).
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/deb-systemd-helper"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stubDir, log := stubs(t)
	env := []string{
		"PATH=" + stubDir + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"STUB_LOG=" + log,
		"STUB_STATE=" + filepath.Join(stubDir, "users"),
	}
	// The dependencies (passwd, init-system-helpers) are not in the empty database; the
	// stubs stand in for them.
	dpkg := func(args ...string) {
		t.Helper()
		base := []string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--force-not-root",
			"--log=" + filepath.Join(root, "dpkg.log")}
		must(t, ".", env, "dpkg", append(base, args...)...)
	}
	calls := func() []string {
		t.Helper()
		b, err := os.ReadFile(log)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		os.Remove(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, p))
		return err == nil
	}
	wantCalls := func(step string, want ...string) {
		t.Helper()
		got := calls()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: the scripts called\n  %s\nwant\n  %s", step, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	conf := "/etc/wasmfleet/agent.yaml"
	data := "/var/lib/wasmfleet"

	// Install: the user and group are made, the configuration is given to the group, the
	// data directory made (0700), the unit enabled. DPKG_ROOT is set, so systemd is not
	// asked to start anything.
	dpkg("--install", deb)
	wantCalls("install",
		"getent group wasmfleet",
		"groupadd --system wasmfleet",
		"getent passwd wasmfleet",
		"useradd --system --gid wasmfleet --home-dir /var/lib/wasmfleet --no-create-home --shell /usr/sbin/nologin --comment wasmfleet device agent wasmfleet",
		"dpkg-statoverride --list "+conf,
		"chown root:wasmfleet "+root+conf,
		"chown wasmfleet:wasmfleet "+root+data,
		"deb-systemd-helper --quiet was-enabled wasmfleet-agent.service",
		"deb-systemd-helper enable wasmfleet-agent.service",
	)
	for p, mode := range map[string]os.FileMode{
		"/usr/bin/wasmfleet-agent": 0o755, conf: 0o640, data: 0o700 | os.ModeDir,
		"/usr/lib/systemd/system/wasmfleet-agent.service": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatalf("after install: %v", err)
		}
		if fi.Mode()&(os.ModePerm|os.ModeDir) != mode {
			t.Errorf("after install: %s has mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	status := must(t, ".", nil, "dpkg", "--root="+root, "--status", "wasmfleet-agent")
	if !strings.Contains(status, "Status: install ok installed") || !strings.Contains(status, "Conffiles:\n "+conf+" ") {
		t.Errorf("dpkg --status after install:\n%s", status)
	}

	// Reinstall (as an upgrade does) over a configuration the administrator changed: the
	// change is kept, the user is not made again.
	edited := []byte("device_id: pi-1 # edited\n")
	if err := os.WriteFile(filepath.Join(root, conf), edited, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, data, "state.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--force-confold", "--install", deb)
	wantCalls("reinstall",
		"getent group wasmfleet",
		"getent passwd wasmfleet",
		"dpkg-statoverride --list "+conf,
		"chown root:wasmfleet "+root+conf,
		"chown wasmfleet:wasmfleet "+root+data,
		"deb-systemd-helper --quiet was-enabled wasmfleet-agent.service",
		"deb-systemd-helper enable wasmfleet-agent.service",
	)
	if b, _ := os.ReadFile(filepath.Join(root, conf)); string(b) != string(edited) {
		t.Errorf("reinstall replaced the edited configuration with:\n%s", b)
	}

	// Remove: the program and unit go; the configuration and the data stay; the unit is
	// masked (its enablement kept for a reinstall).
	dpkg("--remove", "wasmfleet-agent")
	wantCalls("remove", "deb-systemd-helper mask wasmfleet-agent.service")
	for p, want := range map[string]bool{
		"/usr/bin/wasmfleet-agent": false, "/usr/lib/systemd/system/wasmfleet-agent.service": false,
		conf: true, data + "/state.json": true,
	} {
		if exists(p) != want {
			t.Errorf("after remove: %s exists: %v, want %v", p, !want, want)
		}
	}

	// Purge: the configuration and the data go, and /etc/wasmfleet with them (empty now).
	dpkg("--purge", "wasmfleet-agent")
	wantCalls("purge",
		"deb-systemd-helper purge wasmfleet-agent.service",
		"deb-systemd-helper unmask wasmfleet-agent.service",
	)
	for _, p := range []string{conf, data, "/etc/wasmfleet"} {
		if exists(p) {
			t.Errorf("after purge: %s is still there", p)
		}
	}
}
