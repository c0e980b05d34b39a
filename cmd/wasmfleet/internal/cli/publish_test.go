package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// s3World is a versitygw with an empty bucket "fleet", and the environment of the S3 flags
// set to reach it (the secret key only in the environment, as in production).
func s3World(t *testing.T) *testenv.S3 {
	t.Helper()
	s3 := testenv.StartS3(t, nil)
	s3.MakeBucket("fleet")
	for k, v := range map[string]string{
		s3EndpointEnv: s3.URL(), s3BucketEnv: "fleet", s3RegionEnv: s3.Region, s3InsecureEnv: "true",
		s3AccessKeyEnv: s3.AccessKey, s3SecretKeyEnv: s3.SecretKey, s3SecretFileEnv: "", s3CAEnv: "",
	} {
		t.Setenv(k, v)
	}
	return s3
}

// keysUnder lists the bucket's keys under prefix.
func keysUnder(t *testing.T, s3 *testenv.S3, prefix string) []string {
	t.Helper()
	var keys []string
	for o := range s3.Client().ListObjects(context.Background(), "fleet", minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readBack(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublish runs `wasmfleet publish` against a real versitygw: the release lands in the
// layout of DESIGN.md, every refusal happens before anything is written, publishing again
// is a no-op, a published version is never replaced, and `wasmfleet releases` lists what is
// there.
func TestPublish(t *testing.T) {
	dir := setup(t) // keys, root.json (release keys 2 of 3), m.yaml (threshold-alert 1.2.0), m.wasm
	s3 := s3World(t)
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel3.key", "--manifest", "m.yaml", "m.wasm", "-o", "rel.json")
	const base = "releases/threshold-alert/1.2.0/"

	t.Run("NoTrust", func(t *testing.T) {
		refusedWith(t, dir, "trust: no --trust given and the bucket holds no trust/root.json", "publish", "rel.json", "m.wasm")
		if k := keysUnder(t, s3, ""); len(k) != 0 {
			t.Fatalf("wrote %v", k)
		}
	})

	t.Run("Happy", func(t *testing.T) {
		// Flags rather than the environment for everything but the secret.
		t.Setenv(s3EndpointEnv, "")
		t.Setenv(s3BucketEnv, "")
		t.Setenv(s3AccessKeyEnv, "")
		t.Setenv(s3InsecureEnv, "")
		code, out, errs := wf(t, dir, "publish", "rel.json", "m.wasm", "--trust", "root.json",
			"--s3-endpoint", s3.Endpoint(), "--bucket", "fleet", "--s3-insecure", "--s3-access-key", s3.AccessKey)
		if code != 0 || errs != "" {
			t.Fatalf("exit %d\n%s%s", code, out, errs)
		}
		if !strings.Contains(out, "published threshold-alert 1.2.0 (sha256 ") || !strings.Contains(out, "signed by 2 of 3 release keys") ||
			!strings.Contains(out, "to s3://fleet/"+base+"\n") || !strings.Contains(out, "uploaded root.json (version 1) to s3://fleet/trust/root.json") {
			t.Fatalf("stdout:\n%s", out)
		}
		for key, file := range map[string]string{base + "module.wasm": "m.wasm", base + "release.dsse.json": "rel.json", "trust/root.json": "root.json"} {
			if !bytes.Equal(s3.Get("fleet", key), readBack(t, dir, file)) {
				t.Errorf("%s is not %s", key, file)
			}
		}
	})

	t.Run("Idempotent", func(t *testing.T) {
		before := keysUnder(t, s3, "")
		// versitygw keeps each object as a file: a rewrite would change its inode or mtime.
		stat := func() []os.FileInfo {
			var fi []os.FileInfo
			for _, k := range before {
				st, err := os.Stat(filepath.Join(s3.DataDir(), "fleet", k))
				if err != nil {
					t.Fatal(err)
				}
				fi = append(fi, st)
			}
			return fi
		}
		fi0 := stat()
		// Without --trust: the bucket's trust file, uploaded above, is used.
		out := must(t, dir, "publish", "rel.json", "m.wasm")
		if !strings.HasPrefix(out, "already published: threshold-alert 1.2.0") || !strings.Contains(out, "nothing written") {
			t.Fatalf("stdout: %s", out)
		}
		fi1 := stat()
		for i := range fi0 {
			if !os.SameFile(fi0[i], fi1[i]) || !fi0[i].ModTime().Equal(fi1[i].ModTime()) {
				t.Fatalf("publishing again rewrote %s", before[i])
			}
		}
		if strings.Join(keysUnder(t, s3, ""), " ") != strings.Join(before, " ") {
			t.Fatal("publishing again wrote a new object")
		}
		// Countersigned by the third key: the same release, kept as first published.
		must(t, dir, "sign", "--key", "rel2.key", "--add-signature", "rel.json", "m.wasm", "-o", "rel3sig.json")
		code, out, errs := wf(t, dir, "publish", "--trust", "root.json", "rel3sig.json", "m.wasm")
		if code != 0 || !strings.HasPrefix(out, "already published:") || !strings.Contains(errs, "carries other signatures than rel3sig.json; it was kept") {
			t.Fatalf("countersigned: exit %d\n%s%s", code, out, errs)
		}
		if code, _, errs := wf(t, dir, "publish", "--quiet", "--trust", "root.json", "rel3sig.json", "m.wasm"); code != 0 || errs != "" {
			t.Fatalf("--quiet: exit %d, stderr %q", code, errs)
		}
	})

	// A second version, for the refusals: nothing may appear under it.
	writeFile(t, dir, "m13.yaml", []byte(strings.Replace(testManifest, "1.2.0", "1.3.0", 1)))
	const base13 = "releases/threshold-alert/1.3.0/"

	t.Run("RefusedSignatures", func(t *testing.T) {
		must(t, dir, "sign", "--key", "rel2.key", "--manifest", "m13.yaml", "m.wasm", "-o", "one.json")
		refusedWith(t, dir, "threshold: release needs 2 of the 3 release keys", "publish", "--trust", "root.json", "one.json", "m.wasm")
		must(t, dir, "sign", "--key", "stranger.key", "--key", "rollout.key", "--manifest", "m13.yaml", "m.wasm", "-o", "strangers.json")
		refusedWith(t, dir, "unknown-key:", "publish", "--trust", "root.json", "strangers.json", "m.wasm")
		// Unsigned: the envelope with its signatures taken away.
		var e map[string]any
		if err := json.Unmarshal(readBack(t, dir, "one.json"), &e); err != nil {
			t.Fatal(err)
		}
		e["signatures"] = []any{}
		unsigned, _ := json.Marshal(e)
		writeFile(t, dir, "unsigned.json", unsigned)
		refusedWith(t, dir, "malformed:", "publish", "--trust", "root.json", "unsigned.json", "m.wasm")
		if k := keysUnder(t, s3, base13); len(k) != 0 {
			t.Fatalf("a refused release wrote %v", k)
		}
	})

	t.Run("DigestMismatch", func(t *testing.T) {
		must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m13.yaml", "m.wasm", "-o", "rel13.json")
		other := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{9}, 3000)...) // same size
		writeFile(t, dir, "other.wasm", other)
		refusedWith(t, dir, "digest:", "publish", "--trust", "root.json", "rel13.json", "other.wasm")
		writeFile(t, dir, "long.wasm", append(readBack(t, dir, "m.wasm"), 0))
		refusedWith(t, dir, "too-large:", "publish", "--trust", "root.json", "rel13.json", "long.wasm")
		if k := keysUnder(t, s3, base13); len(k) != 0 {
			t.Fatalf("a refused module wrote %v", k)
		}
	})

	t.Run("DifferentDigestSameVersion", func(t *testing.T) {
		writeFile(t, dir, "m2.wasm", append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{5}, 4000)...))
		must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m.yaml", "m2.wasm", "-o", "rel2.json")
		refusedWith(t, dir, "conflict: "+base+"release.dsse.json: threshold-alert 1.2.0 is already published for another module",
			"publish", "--trust", "root.json", "rel2.json", "m2.wasm")
		if !bytes.Equal(s3.Get("fleet", base+"module.wasm"), readBack(t, dir, "m.wasm")) ||
			!bytes.Equal(s3.Get("fleet", base+"release.dsse.json"), readBack(t, dir, "rel.json")) {
			t.Fatal("the published version was replaced")
		}
	})

	t.Run("Usage", func(t *testing.T) {
		if code, _, errs := wf(t, dir, "publish", "rel.json"); code != 1 || !strings.Contains(errs, "publish needs a release and a module") {
			t.Fatalf("one argument: exit %d, %s", code, errs)
		}
		t.Setenv(s3EndpointEnv, "")
		if code, _, errs := wf(t, dir, "publish", "--trust", "root.json", "rel.json", "m.wasm"); code != 1 || !strings.Contains(errs, "s3 endpoint is required") {
			t.Fatalf("no endpoint: exit %d, %s", code, errs)
		}
	})

	// What the steps above left, listed: the two releases by semantic version, and a broken
	// one with its problem.
	t.Run("Releases", func(t *testing.T) {
		writeFile(t, dir, "m10.yaml", []byte(strings.Replace(testManifest, "1.2.0", "1.10.0", 1)))
		must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m10.yaml", "m.wasm", "-o", "rel10.json")
		must(t, dir, "publish", "rel10.json", "m.wasm")
		s3.Put("fleet", "releases/broken/0.1.0/release.dsse.json", []byte("{"))

		out := must(t, dir, "releases")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME ") || !strings.Contains(lines[0], "SIGNED BY") {
			t.Fatalf("releases:\n%s", out)
		}
		f := strings.Fields(lines[1])
		if f[0] != "broken" || f[1] != "0.1.0" || !strings.Contains(lines[1], "malformed") {
			t.Fatalf("broken line: %q", lines[1])
		}
		for i, v := range []string{"1.2.0", "1.10.0"} { // sorted by semantic version
			f := strings.Fields(lines[2+i])
			// NAME VERSION SHA256 SIZE(2 fields) SIGNED-BY PUBLISHED STATUS
			if len(f) != 8 || f[0] != "threshold-alert" || f[1] != v || len(f[2]) != 12 || f[3]+" "+f[4] != "2.9 KiB" ||
				strings.Count(f[5], ",") != 1 || f[7] != "ok" {
				t.Fatalf("line %d: %q", 2+i, lines[2+i])
			}
			if _, err := time.Parse(time.RFC3339, f[6]); err != nil {
				t.Fatalf("published: %v", err)
			}
		}

		out = must(t, dir, "releases", "threshold-alert", "--trust", "root.json", "--json")
		var entries []publish.Entry
		if err := json.Unmarshal([]byte(out), &entries); err != nil {
			t.Fatalf("--json: %v\n%s", err, out)
		}
		if len(entries) != 2 || !entries[0].Verified || len(entries[0].SignedBy) != 2 || entries[1].Version != "1.10.0" ||
			entries[0].Size != 3008 || entries[0].ModuleSize != 3008 || entries[0].Problem != "" {
			t.Fatalf("entries: %+v", entries)
		}
		if out := must(t, dir, "releases", "--trust", "root.json", "threshold-alert"); strings.Count(out, " verified\n") != 2 {
			t.Fatalf("verified table:\n%s", out)
		}
		if code, out, errs := wf(t, dir, "releases", "nothing"); code != 0 || out != "" || errs != "no releases of nothing in s3://fleet\n" {
			t.Fatalf("none: exit %d %q %q", code, out, errs)
		}
		if code, _, _ := wf(t, dir, "releases", "a", "b"); code != 1 {
			t.Fatalf("two names: exit %d", code)
		}
	})
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressBar(&buf, "module.wasm", 3000)
	p.Read(make([]byte, 1000))
	p.Seek(0, 0) // a retry starts again
	for range 4 {
		p.Read(make([]byte, 1000)) // more than the total: clamped
	}
	p.finish(true)
	last := buf.String()[strings.LastIndex(buf.String(), "\r")+1:]
	if !strings.HasPrefix(last, "module.wasm [==============================] 100%  2.9 KiB / 2.9 KiB") || !strings.HasSuffix(last, "\n") {
		t.Fatalf("bar: %q", buf.String())
	}
	var nilBar *progressBar
	nilBar.finish(true) // no bar (--quiet, or not a terminal)
	if humanBytes(512) != "512 B" || humanBytes(12<<20) != "12.0 MiB" {
		t.Fatal(humanBytes(512), humanBytes(12<<20))
	}
}
