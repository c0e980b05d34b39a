package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// world is a versitygw with an empty bucket, a trust file (one root key, release role
// 2 of 2) and a Bucket that writes with the root credentials.
type world struct {
	t        *testing.T
	s3       *testenv.S3
	bucket   *Bucket
	verifier *signing.Verifier
	rel      []signature.Signer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	s3 := testenv.StartS3(t, nil)
	s3.MakeBucket("fleet")
	root, r1, r2 := signingtest.NewSigner(t), signingtest.NewSigner(t), signingtest.NewSigner(t)
	tf := signingtest.NewTrustFile(1, time.Now().Add(24*time.Hour))
	tf.Roles.Root, tf.Roles.Release, tf.Roles.Rollout = signingtest.Role(t, tf, 1, root), signingtest.Role(t, tf, 2, r1, r2), signingtest.Role(t, tf, 1, signingtest.NewSigner(t))
	env := signingtest.Sign(t, tf, root)
	trust, err := signing.ParseTrust(env)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Config{Endpoint: s3.URL(), Bucket: "fleet", Region: s3.Region, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Insecure: true}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, s3: s3, bucket: b, verifier: &signing.Verifier{Trust: trust}, rel: []signature.Signer{r1, r2}}
}

// release signs a module for name@version with manifest extras, by both release keys.
func (w *world) release(version string, wasm []byte, extra string) []byte {
	w.t.Helper()
	m, err := modules.Parse([]byte("name: counter\nversion: " + version + "\nabi: handler/v1\n" + extra))
	if err != nil {
		w.t.Fatal(err)
	}
	env, err := signing.SignRelease(context.Background(), m, bytes.NewReader(wasm), w.rel...)
	if err != nil {
		w.t.Fatal(err)
	}
	return env
}

func wasm(fill byte, n int) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{fill}, n)...)
}

// TestConditionalWrite checks what publishing relies on: versitygw (v1.8.0) honours
// If-None-Match: * on PUT, as AWS S3 and MinIO do, so a second create of a key fails.
func TestConditionalWrite(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if _, err := w.bucket.putIfAbsent(ctx, "k", []byte("first"), "text/plain", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.bucket.putIfAbsent(ctx, "k", []byte("second"), "text/plain", nil); !errors.Is(err, errExists) {
		t.Fatalf("second conditional put: %v, want errExists", err)
	}
	if got := w.s3.Get("fleet", "k"); string(got) != "first" {
		t.Fatalf("k = %q, want the first write", got)
	}
	if w.bucket.unconditional.Load() {
		t.Fatal("the store was taken for one without conditional writes")
	}
}

// TestPublishRace: publishers of different releases under one version, all at once. The
// conditional writes let exactly one win; the rest see its objects and are refused, and the
// bucket holds the winner's module and release, never a mix.
func TestPublishRace(t *testing.T) {
	w := newWorld(t)
	const n = 6
	envs, mods := make([][]byte, n), make([][]byte, n)
	for i := range n {
		mods[i] = wasm(byte(i), 5000)
		envs[i] = w.release("2.0.0", mods[i], "")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = w.bucket.Publish(context.Background(), w.verifier, envs[i], mods[i], Options{})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("publishers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrConflict):
			t.Fatalf("publisher %d: %v, want a conflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("nobody won: %v", errs)
	}
	mk, _ := objects.ModuleKey("counter", "2.0.0")
	rk, _ := objects.ReleaseKey("counter", "2.0.0")
	if !bytes.Equal(w.s3.Get("fleet", mk), mods[winner]) || !bytes.Equal(w.s3.Get("fleet", rk), envs[winner]) {
		t.Fatal("the bucket does not hold the winner's module and release")
	}
}

// TestPublishStates runs Publish over each state an earlier publish can leave a version in.
func TestPublishStates(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	mod := wasm(1, 3000)
	env := w.release("1.0.0", mod, "")
	mk, _ := objects.ModuleKey("counter", "1.0.0")
	rk, _ := objects.ReleaseKey("counter", "1.0.0")

	// Refused before anything is written: under threshold, then a module that is not the
	// release's.
	one, err := signing.SignRelease(ctx, mustParse(t, "1.0.0", ""), bytes.NewReader(mod), w.rel[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.bucket.Publish(ctx, w.verifier, one, mod, Options{}); !errors.Is(err, signing.ErrThreshold) {
		t.Fatalf("under threshold: %v", err)
	}
	if _, err := w.bucket.Publish(ctx, w.verifier, env, wasm(2, 3000), Options{}); !errors.Is(err, signing.ErrDigest) {
		t.Fatalf("other module: %v", err)
	}
	if entries, _ := w.bucket.List(ctx, "", nil); len(entries) != 0 {
		t.Fatalf("refusals wrote %+v", entries)
	}

	// A module left by an interrupted publish: checked, kept, the release written.
	w.s3.Put("fleet", mk, mod)
	res, err := w.bucket.Publish(ctx, w.verifier, env, mod, Options{})
	if err != nil || res.ModuleUploaded || !res.ReleaseUploaded {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	// Again: nothing to do.
	if res, err = w.bucket.Publish(ctx, w.verifier, env, mod, Options{}); err != nil || !res.AlreadyPublished() || res.OtherSignatures {
		t.Fatalf("again: %+v, %v", res, err)
	}
	// The same statement signed in another order is the same release, kept as it was.
	swapped, err := signing.SignRelease(ctx, mustParse(t, "1.0.0", ""), bytes.NewReader(mod), w.rel[1], w.rel[0])
	if err != nil {
		t.Fatal(err)
	}
	if res, err = w.bucket.Publish(ctx, w.verifier, swapped, mod, Options{}); err != nil || !res.AlreadyPublished() || !res.OtherSignatures {
		t.Fatalf("other signatures: %+v, %v", res, err)
	}
	// A release whose module went missing: the module is uploaded again.
	if err := w.s3.Client().RemoveObject(ctx, "fleet", mk, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err = w.bucket.Publish(ctx, w.verifier, env, mod, Options{}); err != nil || !res.ModuleUploaded || res.ReleaseUploaded {
		t.Fatalf("repair: %+v, %v", res, err)
	}

	// Conflicts: another module, another manifest, a module of the same size but other
	// bytes with no release yet, garbage where the release should be.
	for _, c := range []struct {
		name    string
		prepare func()
		env     []byte
		mod     []byte
		want    string
	}{
		{"other module", nil, w.release("1.0.0", wasm(3, 10), ""), wasm(3, 10), "already published for another module"},
		{"other manifest", nil, w.release("1.0.0", mod, "limits: { memory: 1MiB }\n"), mod, "with another manifest"},
		{"other module bytes", func() {
			k, _ := objects.ModuleKey("counter", "1.1.0")
			w.s3.Put("fleet", k, wasm(4, 3000))
		}, w.release("1.1.0", mod, ""), mod, "holds another module of the same size"},
		{"garbage release", func() {
			k, _ := objects.ReleaseKey("counter", "1.2.0")
			w.s3.Put("fleet", k, []byte("{}"))
		}, w.release("1.2.0", mod, ""), mod, "not a release envelope"},
	} {
		if c.prepare != nil {
			c.prepare()
		}
		_, err := w.bucket.Publish(ctx, w.verifier, c.env, c.mod, Options{})
		var ce *ConflictError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a conflict saying %q", c.name, err, c.want)
		}
	}
	if got := w.s3.Get("fleet", rk); !bytes.Equal(got, env) {
		t.Fatal("a refused publish replaced the release")
	}

	// Trust file: uploaded when absent, then left alone.
	if _, err := w.bucket.Trust(ctx); !errors.Is(err, ErrNoTrust) {
		t.Fatalf("trust before upload: %v", err)
	}
	tr, err := w.bucket.PublishTrust(ctx, w.verifier.Trust)
	if err != nil || !tr.Uploaded {
		t.Fatalf("trust: %+v, %v", tr, err)
	}
	if tr, err = w.bucket.PublishTrust(ctx, w.verifier.Trust); err != nil || tr.Uploaded || !tr.Same || tr.StoredVersion != 1 {
		t.Fatalf("trust again: %+v, %v", tr, err)
	}
	if got, err := w.bucket.Trust(ctx); err != nil || got.Version() != 1 {
		t.Fatalf("trust read back: %v", err)
	}
}

func mustParse(t *testing.T, version, extra string) *modules.Manifest {
	t.Helper()
	m, err := modules.Parse([]byte(fmt.Sprintf("name: counter\nversion: %s\nabi: handler/v1\n%s", version, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestList lists releases, sorted by semantic version, with what is wrong with the broken.
func TestList(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, v := range []string{"1.10.0", "1.2.0", "1.2.0-rc.1"} {
		mod := wasm(5, 100)
		if _, err := w.bucket.Publish(ctx, w.verifier, w.release(v, mod, ""), mod, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	w.s3.Put("fleet", "releases/counter/9.0.0/module.wasm", wasm(6, 10))
	w.s3.Put("fleet", "releases/other/0.1.0/release.dsse.json", []byte("not json"))
	w.s3.Put("fleet", "releases/other/0.1.0/notes.txt", []byte("ignored"))

	entries, err := w.bucket.List(ctx, "", w.verifier)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		s := e.Name + "@" + e.Version
		if e.Verified {
			s += " verified"
		}
		if e.Problem != "" {
			s += " problem"
		}
		got = append(got, s)
	}
	want := "counter@1.2.0-rc.1 verified,counter@1.2.0 verified,counter@1.10.0 verified,counter@9.0.0 problem,other@0.1.0 problem"
	if strings.Join(got, ",") != want {
		t.Fatalf("list = %s\nwant   %s", strings.Join(got, ","), want)
	}
	e := entries[0]
	if len(e.SignedBy) != 2 || len(e.KeyIDs) != 2 || e.Size != 108 || e.ModuleSize != 108 || len(e.SHA256) != 64 || time.Since(e.Published) > time.Minute {
		t.Fatalf("entry = %+v", e)
	}
	only, err := w.bucket.List(ctx, "other", nil)
	if err != nil || len(only) != 1 || !strings.Contains(only[0].Problem, "malformed") {
		t.Fatalf("list other = %+v, %v", only, err)
	}
}

// TestUnconditionalFallback: a store that answers 501 to If-None-Match (an in-process
// stand-in: the logic under test is ours) is written to without it, once it has said so,
// and the fallback is logged.
func TestUnconditionalFallback(t *testing.T) {
	var mu sync.Mutex
	var conditional, plain int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.Copy(io.Discard, r.Body)
		switch {
		case r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "":
			conditional++
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`)
		case r.Method == http.MethodPut:
			plain++
			w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	b, err := Open(Config{Endpoint: srv.URL, Bucket: "fleet", Region: "us-east-1", AccessKey: "a", SecretKey: "s", Insecure: true}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"one", "two"} {
		if _, err := b.putIfAbsent(context.Background(), k, []byte("x"), "text/plain", nil); err != nil {
			t.Fatal(err)
		}
	}
	if conditional != 1 || plain != 2 || strings.Count(logs.String(), "does not implement conditional writes") != 1 {
		t.Fatalf("%d conditional and %d plain puts; log %s", conditional, plain, logs.String())
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Endpoint: "s3.example.com", Bucket: "b"}, ""},
		{Config{Endpoint: "https://s3.example.com:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"}, ""},
		{Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", Insecure: true}, ""},
		{Config{Bucket: "b"}, "endpoint is required"},
		{Config{Endpoint: "e"}, "bucket is required"},
		{Config{Endpoint: "e", Bucket: "b", AccessKey: "a"}, "both"},
		{Config{Endpoint: "http://e", Bucket: "b"}, "plain http but insecure is not set"},
		{Config{Endpoint: "https://e", Bucket: "b", Insecure: true}, "is https but insecure"},
		{Config{Endpoint: "https://e/path", Bucket: "b"}, "only scheme, host and port"},
		{Config{Endpoint: "e", Bucket: "b", Insecure: true, CAFile: "ca.pem"}, "needs https"},
		{Config{Endpoint: "a b", Bucket: "b"}, "not host[:port]"},
	} {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if s := fmt.Sprintf("%v %#v", Config{SecretKey: "hunter2"}, Config{SecretKey: "hunter2"}); strings.Contains(s, "hunter2") {
		t.Errorf("printed the secret: %s", s)
	}
}
