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
	"strings"
	"sync"
	"testing"
)

// The packages are built once for all tests: `make cross` into a temporary directory (with
// the Makefile's flags, so after `make check` it comes from Go's build cache), then
// build.sh. Both need the tools make deps installs (nfpm, dpkg-deb).

var archs = []string{"amd64", "arm64", "armhf"}

// goTarget is the GOARCH (and GOARM) each package's binary must be built for.
var goTarget = map[string][2]string{"amd64": {"amd64", ""}, "arm64": {"arm64", ""}, "armhf": {"arm", "6"}}

// testVersion is the version the tests build, so that file names are known.
const testVersion = "1.2.3~test1"

var built struct {
	once sync.Once
	dir  string // dist directory
	err  error
}

// packages builds the three packages (once) and returns their paths by architecture.
func packages(t *testing.T) map[string]string {
	t.Helper()
	built.once.Do(func() {
		tmp, err := os.MkdirTemp("", "wasmfleet-deb-test-*")
		if err != nil {
			built.err = err
			return
		}
		built.dir = filepath.Join(tmp, "dist")
		bin := filepath.Join(tmp, "bin")
		if out, err := run("../..", nil, "make", "-s", "cross", "BIN="+bin); err != nil {
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
	debs := map[string]string{}
	for _, a := range archs {
		debs[a] = filepath.Join(built.dir, "wasmfleet-agent_"+testVersion+"_"+a+".deb")
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
	for arch, deb := range packages(t) {
		fields := map[string]string{}
		for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Depends", "Section", "Priority", "Description"} {
			fields[f] = strings.TrimSpace(must(t, ".", nil, "dpkg-deb", "-f", deb, f))
		}
		want := map[string]string{
			"Package": "wasmfleet-agent", "Version": testVersion, "Architecture": arch,
			"Depends": "passwd, init-system-helpers", "Section": "net", "Priority": "optional",
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("%s: %s: %q, want %q", arch, k, fields[k], v)
			}
		}
		if !regexp.MustCompile(`^.+ <[^@ ]+@[^@ ]+>$`).MatchString(fields["Maintainer"]) {
			t.Errorf("%s: Maintainer %q is not 'Name <address>'", arch, fields["Maintainer"])
		}
		if !strings.HasPrefix(fields["Description"], "wasmfleet device agent") {
			t.Errorf("%s: Description %q", arch, fields["Description"])
		}
		// dpkg-deb -I lists the control members: the three scripts, conffiles, md5sums.
		info := must(t, ".", nil, "dpkg-deb", "-I", deb)
		for _, m := range []string{"conffiles", "control", "md5sums", "postinst", "prerm", "postrm"} {
			if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + m + `\b`).MatchString(info) {
				t.Errorf("%s: dpkg-deb -I does not list %s:\n%s", arch, m, info)
			}
		}
	}
}

// wantFiles is every entry of the package's data, as dpkg-deb -c shows mode and owner.
var wantFiles = []string{
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
}

// TestContents: files, modes and owners; the unit, the configuration template and the
// scripts are the repository's, byte for byte; the conffile is declared; the binary is the
// static build for the package's architecture (ARMv6 for armhf).
func TestContents(t *testing.T) {
	for arch, deb := range packages(t) {
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(must(t, ".", nil, "dpkg-deb", "-c", deb)), "\n") {
			f := strings.Fields(l) // mode owner size date time path
			if len(f) != 6 {
				t.Fatalf("%s: dpkg-deb -c line %q", arch, l)
			}
			got = append(got, f[0]+" "+f[1]+" "+f[5])
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(wantFiles))
		if !slices.Equal(got, want) {
			t.Errorf("%s: contents\n%s\nwant\n%s", arch, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		root := t.TempDir()
		must(t, ".", nil, "dpkg-deb", "-x", deb, root)
		ctl := filepath.Join(root, "DEBIAN")
		must(t, ".", nil, "dpkg-deb", "-e", deb, ctl)
		same := map[string]string{
			"usr/lib/systemd/system/wasmfleet-agent.service": "../systemd/wasmfleet-agent.service",
			"etc/wasmfleet/agent.yaml":                       "../config/agent.yaml",
			"usr/share/doc/wasmfleet-agent/README.md":        "../../docs/raspberry-pi.md",
			"DEBIAN/postinst":                                "scripts/agent.postinst",
			"DEBIAN/prerm":                                   "scripts/agent.prerm",
			"DEBIAN/postrm":                                  "scripts/agent.postrm",
		}
		for in, src := range same {
			a, err := os.ReadFile(filepath.Join(root, in))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s: /%s differs from %s", arch, in, src)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/wasmfleet/agent.yaml\n" {
			t.Errorf("%s: conffiles %q, want /etc/wasmfleet/agent.yaml", arch, b)
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			p := filepath.Join(ctl, s)
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: %s: %v, mode %v; want 0755", arch, s, err, fi.Mode())
			}
			// sh is dash on Debian: the scripts must be POSIX sh.
			must(t, ".", nil, "sh", "-n", p)
			must(t, ".", nil, "dash", "-n", p)
		}

		// The binary: what go version -m says about how it was built.
		info := must(t, ".", nil, "go", "version", "-m", filepath.Join(root, "usr/bin/wasmfleet-agent"))
		goarch, goarm := goTarget[arch][0], goTarget[arch][1]
		for _, want := range []string{"\tbuild\tGOARCH=" + goarch + "\n", "\tbuild\tCGO_ENABLED=0\n", "\tbuild\tGOOS=linux\n", "\tpath\tgithub.com/wasmfleet/wasmfleet/cmd/wasmfleet-agent\n"} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: binary not built with %q:\n%s", arch, strings.TrimSpace(want), info)
			}
		}
		if goarm != "" && !strings.Contains(info, "\tbuild\tGOARM="+goarm+"\n") {
			t.Errorf("%s: binary not built with GOARM=%s:\n%s", arch, goarm, info)
		}
	}
}

// TestReproducible: building again from the same tree gives the same bytes.
func TestReproducible(t *testing.T) {
	debs := packages(t)
	again := t.TempDir()
	bin := filepath.Join(filepath.Dir(built.dir), "bin")
	must(t, ".", []string{"BIN=" + bin, "VERSION=" + testVersion}, "bash", "build.sh", again)
	for arch, deb := range debs {
		a, b := sum(t, deb), sum(t, filepath.Join(again, filepath.Base(deb)))
		if a != b {
			t.Errorf("%s: two builds differ: %s, %s", arch, a, b)
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

// TestBuildScriptRefuses: no binaries, or a version dpkg would not take, is a clear error.
func TestBuildScriptRefuses(t *testing.T) {
	out, err := run(".", []string{"BIN=" + t.TempDir(), "VERSION=" + testVersion}, "bash", "build.sh", t.TempDir())
	if err == nil || !strings.Contains(out, "wasmfleet-agent not found: run make cross first") {
		t.Errorf("no binaries: %v\n%s", err, out)
	}
	out, err = run(".", []string{"VERSION=v1.0.0"}, "bash", "build.sh", t.TempDir())
	if err == nil || !strings.Contains(out, "a Debian version starts with a digit") {
		t.Errorf("VERSION=v1.0.0: %v\n%s", err, out)
	}
}
