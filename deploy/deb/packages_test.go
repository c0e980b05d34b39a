package deb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The packages are built once for all tests: `make cross` into a temporary directory (with
// the Makefile's flags, so after `make check` it comes from Go's build cache; without the
// ARMv7 build, which no package carries), then build.sh. Both need the tools make deps
// installs (nfpm, dpkg-deb).

var archs = []string{"amd64", "arm64", "armhf"}

// pkg is what the tests expect of one package.
type pkg struct {
	name        string
	description string            // how the Description starts
	files       []string          // every entry of the data, as dpkg-deb -c shows mode and owner
	same        map[string]string // file in the package (or DEBIAN/script) -> the repository's file
	conffiles   string
}

// agentPkg and serverPkg are the two packages build.sh makes for each architecture. Each
// one's binary is /usr/bin/NAME, built from cmd/NAME.
var agentPkg = pkg{
	name:        "wasmfleet-agent",
	description: "wasmfleet device agent",
	files: []string{
		"drwxr-xr-x root/root ./etc/",
		"drwxr-xr-x root/root ./etc/wasmfleet/",
		"-rw-r----- root/root ./etc/wasmfleet/agent.yaml",
		"drwxr-xr-x root/root ./usr/",
		"drwxr-xr-x root/root ./usr/bin/",
		"-rwxr-xr-x root/root ./usr/bin/wasmfleet-agent",
		"drwxr-xr-x root/root ./usr/lib/",
		"drwxr-xr-x root/root ./usr/lib/systemd/",
		"drwxr-xr-x root/root ./usr/lib/systemd/system/",
		"-rw-r--r-- root/root ./usr/lib/systemd/system/wasmfleet-agent.service",
		"drwxr-xr-x root/root ./usr/share/",
		"drwxr-xr-x root/root ./usr/share/doc/",
		"drwxr-xr-x root/root ./usr/share/doc/wasmfleet-agent/",
		"-rw-r--r-- root/root ./usr/share/doc/wasmfleet-agent/README.md",
	},
	same: map[string]string{
		"usr/lib/systemd/system/wasmfleet-agent.service": "../systemd/wasmfleet-agent.service",
		"etc/wasmfleet/agent.yaml":                       "../config/agent.yaml",
		"usr/share/doc/wasmfleet-agent/README.md":        "../../docs/raspberry-pi.md",
		"DEBIAN/postinst":                                "scripts/agent.postinst",
		"DEBIAN/prerm":                                   "scripts/agent.prerm",
		"DEBIAN/postrm":                                  "scripts/agent.postrm",
	},
	conffiles: "/etc/wasmfleet/agent.yaml\n",
}

var serverPkg = pkg{
	name:        "wasmfleet",
	description: "wasmfleet fleet server and CLI",
	files: []string{
		"drwxr-xr-x root/root ./etc/",
		"drwxr-xr-x root/root ./etc/wasmfleet/",
		"-rw------- root/root ./etc/wasmfleet/fleet.env",
		"drwxr-xr-x root/root ./usr/",
		"drwxr-xr-x root/root ./usr/bin/",
		"-rwxr-xr-x root/root ./usr/bin/wasmfleet",
		"drwxr-xr-x root/root ./usr/lib/",
		"drwxr-xr-x root/root ./usr/lib/systemd/",
		"drwxr-xr-x root/root ./usr/lib/systemd/system/",
		"-rw-r--r-- root/root ./usr/lib/systemd/system/wasmfleet.service",
		"drwxr-xr-x root/root ./usr/share/",
		"drwxr-xr-x root/root ./usr/share/doc/",
		"drwxr-xr-x root/root ./usr/share/doc/wasmfleet/",
		"-rw-r--r-- root/root ./usr/share/doc/wasmfleet/README.md",
		"-rw-r--r-- root/root ./usr/share/doc/wasmfleet/dashboard.md",
		"-rw-r--r-- root/root ./usr/share/doc/wasmfleet/rollouts.md",
		"-rw-r--r-- root/root ./usr/share/doc/wasmfleet/signing.md",
	},
	same: map[string]string{
		"usr/lib/systemd/system/wasmfleet.service": "../systemd/wasmfleet.service",
		"etc/wasmfleet/fleet.env":                  "../config/fleet.env",
		"usr/share/doc/wasmfleet/README.md":        "../../docs/operating.md",
		"usr/share/doc/wasmfleet/dashboard.md":     "../../docs/dashboard.md",
		"usr/share/doc/wasmfleet/rollouts.md":      "../../docs/rollouts.md",
		"usr/share/doc/wasmfleet/signing.md":       "../../docs/signing.md",
		"DEBIAN/postinst":                          "scripts/server.postinst",
		"DEBIAN/prerm":                             "scripts/server.prerm",
		"DEBIAN/postrm":                            "scripts/server.postrm",
	},
	conffiles: "/etc/wasmfleet/fleet.env\n",
}

var pkgs = []pkg{agentPkg, serverPkg}

// goTarget is the GOARCH (and GOARM) each package's binary must be built for.
var goTarget = map[string][2]string{"amd64": {"amd64", ""}, "arm64": {"arm64", ""}, "armhf": {"arm", "6"}}

// testVersion is the version the tests build, so that file names are known.
const testVersion = "1.2.3~test1"

var built struct {
	once sync.Once
	dir  string // dist directory
	err  error
}

// packages builds the six packages (once) and returns their paths by package name and
// architecture.
func packages(t *testing.T) map[string]map[string]string {
	t.Helper()
	built.once.Do(func() {
		tmp, err := os.MkdirTemp("", "wasmfleet-deb-test-*")
		if err != nil {
			built.err = err
			return
		}
		built.dir = filepath.Join(tmp, "dist")
		bin := filepath.Join(tmp, "bin")
		if out, err := run("../..", nil, "make", "-s", "cross", "BIN="+bin, "CROSS=linux/arm64 linux/arm/6 linux/amd64"); err != nil {
			built.err = fmt.Errorf("make cross: %v\n%s", err, out)
			return
		}
		if out, err := run(".", []string{"BIN=" + bin, "VERSION=" + testVersion}, "bash", "build.sh", built.dir); err != nil {
			built.err = fmt.Errorf("build.sh: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	debs := map[string]map[string]string{}
	for _, p := range pkgs {
		debs[p.name] = map[string]string{}
		for _, a := range archs {
			debs[p.name][a] = filepath.Join(built.dir, p.name+"_"+testVersion+"_"+a+".deb")
		}
	}
	return debs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(filepath.Dir(built.dir))
	}
	os.Exit(code)
}

// run runs a command in dir with extra environment and returns its combined output.
func run(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func must(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// TestControl: the control fields of each package.
func TestControl(t *testing.T) {
	debs := packages(t)
	for _, p := range pkgs {
		for arch, deb := range debs[p.name] {
			fields := map[string]string{}
			for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Depends", "Section", "Priority", "Description"} {
				fields[f] = strings.TrimSpace(must(t, ".", nil, "dpkg-deb", "-f", deb, f))
			}
			want := map[string]string{
				"Package": p.name, "Version": testVersion, "Architecture": arch,
				"Depends": "passwd, init-system-helpers", "Section": "net", "Priority": "optional",
			}
			for k, v := range want {
				if fields[k] != v {
					t.Errorf("%s %s: %s: %q, want %q", p.name, arch, k, fields[k], v)
				}
			}
			if !regexp.MustCompile(`^.+ <[^@ ]+@[^@ ]+>$`).MatchString(fields["Maintainer"]) {
				t.Errorf("%s %s: Maintainer %q is not 'Name <address>'", p.name, arch, fields["Maintainer"])
			}
			if !strings.HasPrefix(fields["Description"], p.description) {
				t.Errorf("%s %s: Description %q", p.name, arch, fields["Description"])
			}
			// dpkg-deb -I lists the control members: the three scripts, conffiles, md5sums.
			info := must(t, ".", nil, "dpkg-deb", "-I", deb)
			for _, m := range []string{"conffiles", "control", "md5sums", "postinst", "prerm", "postrm"} {
				if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + m + `\b`).MatchString(info) {
					t.Errorf("%s %s: dpkg-deb -I does not list %s:\n%s", p.name, arch, m, info)
				}
			}
			// gzip: every dpkg reads it (the yaml files say why not zstd).
			if m := arMembers(t, deb); !slices.Equal(m, []string{"debian-binary", "control.tar.gz", "data.tar.gz"}) {
				t.Errorf("%s %s: members %q, want debian-binary, control.tar.gz, data.tar.gz", p.name, arch, m)
			}
		}
	}
}

// arMembers lists the members of a .deb (an ar archive).
func arMembers(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("%s: not an ar archive", path)
	}
	var names []string
	for off := 8; off < len(b); {
		if off+60 > len(b) {
			t.Fatalf("%s: truncated member header at %d", path, off)
		}
		h := b[off : off+60] // name[16] date[12] uid[6] gid[6] mode[8] size[10] "`\n"
		size, err := strconv.Atoi(strings.TrimSpace(string(h[48:58])))
		if err != nil || size < 0 {
			t.Fatalf("%s: member size %q", path, h[48:58])
		}
		names = append(names, strings.TrimSuffix(strings.TrimSpace(string(h[:16])), "/"))
		off += 60 + size + size%2
	}
	return names
}

// TestContents: files, modes and owners; the unit, the configuration template, the docs and
// the scripts are the repository's, byte for byte; the conffile is declared; the binary is
// the static build for the package's architecture (ARMv6 for armhf).
func TestContents(t *testing.T) {
	debs := packages(t)
	for _, p := range pkgs {
		for arch, deb := range debs[p.name] {
			checkContents(t, p, arch, deb)
		}
	}
}

func checkContents(t *testing.T, p pkg, arch, deb string) {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(must(t, ".", nil, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(l) // mode owner size date time path
		if len(f) != 6 {
			t.Fatalf("%s %s: dpkg-deb -c line %q", p.name, arch, l)
		}
		got = append(got, f[0]+" "+f[1]+" "+f[5])
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(p.files))
	if !slices.Equal(got, want) {
		t.Errorf("%s %s: contents\n%s\nwant\n%s", p.name, arch, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	root := t.TempDir()
	must(t, ".", nil, "dpkg-deb", "-x", deb, root)
	ctl := filepath.Join(root, "DEBIAN")
	must(t, ".", nil, "dpkg-deb", "-e", deb, ctl)
	for in, src := range p.same {
		a, err := os.ReadFile(filepath.Join(root, in))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s %s: /%s differs from %s", p.name, arch, in, src)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != p.conffiles {
		t.Errorf("%s %s: conffiles %q, want %q", p.name, arch, b, p.conffiles)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join(ctl, s)
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s %s: %s: %v, mode %v; want 0755", p.name, arch, s, err, fi.Mode())
		}
		// sh is dash on Debian: the scripts must be POSIX sh.
		must(t, ".", nil, "sh", "-n", path)
		must(t, ".", nil, "dash", "-n", path)
	}

	// The binary: what go version -m says about how it was built.
	info := must(t, ".", nil, "go", "version", "-m", filepath.Join(root, "usr/bin", p.name))
	goarch, goarm := goTarget[arch][0], goTarget[arch][1]
	for _, want := range []string{"\tbuild\tGOARCH=" + goarch + "\n", "\tbuild\tCGO_ENABLED=0\n", "\tbuild\tGOOS=linux\n", "\tpath\tgithub.com/wasmfleet/wasmfleet/cmd/" + p.name + "\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("%s %s: binary not built with %q:\n%s", p.name, arch, strings.TrimSpace(want), info)
		}
	}
	if goarm != "" && !strings.Contains(info, "\tbuild\tGOARM="+goarm+"\n") {
		t.Errorf("%s %s: binary not built with GOARM=%s:\n%s", p.name, arch, goarm, info)
	}
}

// TestSharedUser: both postinsts make the user wasmfleet with the same lines, so that
// whichever package comes first makes the same user (install_test.go runs both orders).
func TestSharedUser(t *testing.T) {
	block := func(script string) string {
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?ms)^# BEGIN user wasmfleet.*?^# END user wasmfleet\n`).Find(b)
		if m == nil || !bytes.Contains(m, []byte("useradd --system")) {
			t.Fatalf("%s: no BEGIN/END user wasmfleet block with useradd", script)
		}
		return string(m)
	}
	if a, s := block("scripts/agent.postinst"), block("scripts/server.postinst"); a != s {
		t.Errorf("the user blocks differ:\n%s\n---\n%s", a, s)
	}
}

// TestReproducible: building again from the same tree gives the same bytes.
func TestReproducible(t *testing.T) {
	debs := packages(t)
	again := t.TempDir()
	bin := filepath.Join(filepath.Dir(built.dir), "bin")
	must(t, ".", []string{"BIN=" + bin, "VERSION=" + testVersion}, "bash", "build.sh", again)
	for _, byArch := range debs {
		for _, deb := range byArch {
			a, b := sum(t, deb), sum(t, filepath.Join(again, filepath.Base(deb)))
			if a != b {
				t.Errorf("%s: two builds differ: %s, %s", filepath.Base(deb), a, b)
			}
		}
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestBuildScriptRefuses: no binaries, one of the two missing, or a version dpkg would not
// take, is a clear error.
func TestBuildScriptRefuses(t *testing.T) {
	out, err := run(".", []string{"BIN=" + t.TempDir(), "VERSION=" + testVersion}, "bash", "build.sh", t.TempDir())
	if err == nil || !strings.Contains(out, "linux-amd64/wasmfleet-agent not found: run make cross first") {
		t.Errorf("no binaries: %v\n%s", err, out)
	}
	// Only the agent: its package is built, then the fleet server's binary is missing.
	bin := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bin, "linux-amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "linux-amd64", "wasmfleet-agent"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = run(".", []string{"BIN=" + bin, "VERSION=" + testVersion}, "bash", "build.sh", t.TempDir())
	if err == nil || !strings.Contains(out, "linux-amd64/wasmfleet not found: run make cross first") {
		t.Errorf("no wasmfleet binary: %v\n%s", err, out)
	}
	out, err = run(".", []string{"VERSION=v1.0.0"}, "bash", "build.sh", t.TempDir())
	if err == nil || !strings.Contains(out, "a Debian version starts with a digit") {
		t.Errorf("VERSION=v1.0.0: %v\n%s", err, out)
	}
}
