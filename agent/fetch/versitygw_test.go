package fetch

// Integration tests against a real S3 server (versitygw from internal/testenv), with the
// read-only credentials an agent gets.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
)

const bucket = "fleet"

// startS3 runs versitygw with one bucket and returns a read-only Config for it.
func startS3(t *testing.T, opts *testenv.S3Options) (*testenv.S3, Config) {
	t.Helper()
	s := testenv.StartS3(t, opts)
	s.MakeBucket(bucket)
	ak, sk := s.ReadOnlyUser(bucket)
	cfg := Config{
		Endpoint:    s.Endpoint(),
		Bucket:      bucket,
		Region:      s.Region,
		AccessKey:   ak,
		SecretKey:   sk,
		Insecure:    !s.Secure(),
		Retry:       RetryPolicy{Base: 20 * time.Millisecond, Max: 300 * time.Millisecond},
		IdleTimeout: 5 * time.Second,
	}
	if opts != nil && opts.PKI != nil {
		cfg.CAFile = opts.PKI.CAFile
	}
	return s, cfg
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		<-tick.C
	}
}

// logWatch is a log sink that lets a test wait for a message.
type logWatch struct {
	mu    sync.Mutex
	lines []string
	t     *testing.T
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.lines = append(w.lines, string(p))
	w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (w *logWatch) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// pauseAt lets the first body deliver at least n bytes and then blocks its reads until
// release is closed; later bodies pass untouched.
type pauseAt struct {
	n       int64
	release chan struct{}
	once    sync.Once
}

func (p *pauseAt) hook(body io.ReadCloser) io.ReadCloser {
	first := false
	p.once.Do(func() { first = true })
	if !first {
		return body
	}
	return &pausingBody{ReadCloser: body, p: p}
}

type pausingBody struct {
	io.ReadCloser
	p    *pauseAt
	read int64
}

func (b *pausingBody) Read(buf []byte) (int, error) {
	if b.read >= b.p.n {
		<-b.p.release
	}
	n, err := b.ReadCloser.Read(buf)
	b.read += int64(n)
	return n, err
}

// killSize is the module size for the kill test: 4 MiB, or more when the kernel lets a
// socket's send buffer grow so large that a server killed halfway could already have
// handed the whole second half to its kernel, which still delivers it after the process
// is gone, and the kill would cut nothing. The client's receive buffer is pinned small.
func killSize(t *testing.T) int64 {
	size := int64(4 << 20)
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		t.Logf("tcp_wmem unknown (%v); module size %d", err, size)
		return size
	}
	var lo, def, max int64
	if _, err := fmt.Sscan(string(b), &lo, &def, &max); err != nil {
		t.Fatalf("parse tcp_wmem %q: %v", b, err)
	}
	if need := 2 * (max + 1<<20); need > size {
		size = need
	}
	t.Logf("tcp_wmem max %d: module size %d", max, size)
	return size
}

// TestVersitygwDownloadSurvivesKill kills the S3 server with half of a module on disk,
// starts it again, and expects the download to finish by resuming: the file is the object
// and at most 10% more than its size crossed the network.
func TestVersitygwDownloadSurvivesKill(t *testing.T) {
	t.Parallel()
	s, cfg := startS3(t, nil)
	size := killSize(t)
	obj := randomBytes(t, int(size))
	key, err := objects.ModuleKey("threshold-alert", "1.2.0")
	if err != nil {
		t.Fatal(err)
	}
	s.Put(bucket, key, obj)

	logs := &logWatch{t: t}
	f, err := New(cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A small receive buffer, so that what the server has already sent when it dies is
	// far less than the half still missing: the kill must cut the transfer.
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
		return errors.Join(err, serr)
	}}
	f.transport.DialContext = dialer.DialContext
	pause := &pauseAt{n: size / 2, release: make(chan struct{})}
	f.bodyHook = pause.hook

	dst := filepath.Join(t.TempDir(), "blob.unverified")
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() {
		st, err := f.Download(ctx, key, dst, size)
		done <- result{st, err}
	}()

	waitFor(t, 10*time.Second, "half the module on disk", func() bool {
		fi, err := os.Stat(dst)
		return err == nil && fi.Size() >= size/2
	})
	s.Kill()
	close(pause.release)
	// The download notices the cut while the server is down, then retries against a
	// closed port until it is back.
	waitFor(t, 10*time.Second, "the download to retry", func() bool { return logs.count("download interrupted") >= 2 })
	landed, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()

	r := <-done
	if r.err != nil {
		t.Fatalf("download: %v\nversitygw log:\n%s", r.err, s.LogTail())
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, obj) {
		t.Fatalf("file differs from the object (%d bytes, want %d)", len(got), size)
	}
	t.Logf("size %d, on disk when the server died %d, fetched %d (%.3f× size), %d attempts, %d resumes",
		size, landed.Size(), r.st.BytesFetched, float64(r.st.BytesFetched)/float64(size), r.st.Attempts, r.st.Resumes)
	if r.st.BytesFetched > size*11/10 {
		t.Errorf("fetched %d bytes for a %d-byte object, more than 1.1×", r.st.BytesFetched, size)
	}
	if landed.Size() >= size || r.st.Resumes < 1 || r.st.Attempts < 3 {
		t.Errorf("the kill did not cut the transfer: %d bytes on disk after it, stats %+v", landed.Size(), r.st)
	}
}

func TestVersitygwErrors(t *testing.T) {
	t.Parallel()
	s, cfg := startS3(t, nil)
	s.MakeBucket("private")
	s.Put("private", objects.TrustKey, []byte("{}"))
	s.Put(bucket, objects.TrustKey, []byte("{}"))
	f, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	key, _ := objects.ModuleKey("no-such-module", "1.0.0")
	st, err := f.Download(ctx, key, filepath.Join(t.TempDir(), "x.unverified"), 1000)
	if !errors.Is(err, ErrNotFound) || st.Attempts != 1 {
		t.Errorf("missing module: %v after %d attempts; want ErrNotFound after 1", err, st.Attempts)
	}
	key, _ = objects.ReleaseKey("no-such-module", "1.0.0")
	if _, err := f.Get(ctx, key, 1<<20); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing release: %v, want ErrNotFound", err)
	}

	other := cfg
	other.Bucket = "private"
	fo, err := New(other, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer fo.Close()
	if _, err := fo.Get(ctx, objects.TrustKey, 1<<20); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("bucket not granted: %v, want ErrAccessDenied", err)
	}

	wrong := cfg
	wrong.SecretKey = "not-the-secret"
	fw, err := New(wrong, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if _, err := fw.Get(ctx, objects.TrustKey, 1<<20); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("wrong secret: %v, want ErrAccessDenied", err)
	}
	if err != nil && strings.Contains(err.Error(), wrong.SecretKey) {
		t.Errorf("error shows the secret: %v", err)
	}

	if _, err := f.Get(ctx, objects.TrustKey, 1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Get over max: %v, want ErrTooLarge", err)
	}
	// Signed size smaller or larger than the object.
	for _, size := range []int64{1, 3} {
		if _, err := f.Download(ctx, objects.TrustKey, filepath.Join(t.TempDir(), "t"), size); err == nil {
			t.Errorf("download of a 2-byte object with signed size %d succeeded", size)
		}
	}
}

// TestVersitygwTLS fetches over HTTPS with a private CA, and with the region asked of the
// server rather than configured.
func TestVersitygwTLS(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	s, cfg := startS3(t, &testenv.S3Options{PKI: pki})
	env := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`)
	key, _ := objects.ReleaseKey("echo", "0.1.0")
	s.Put(bucket, key, env)
	cfg.Region = ""
	f, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := f.Get(ctx, key, 64<<10)
	if err != nil || !bytes.Equal(got, env) {
		t.Fatalf("Get over TLS = %q, %v", got, err)
	}
	st, err := f.Download(ctx, key, filepath.Join(t.TempDir(), "e"), int64(len(env)))
	if err != nil || st.Attempts != 1 {
		t.Fatalf("Download over TLS: %+v, %v", st, err)
	}

	// Without the CA the server is not trusted; that is retried (a clock fixed later can
	// make a certificate valid), here until MaxAttempts.
	cfg.CAFile = ""
	cfg.Retry.MaxAttempts = 2
	fu, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer fu.Close()
	if _, err := fu.Get(ctx, key, 64<<10); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Get without the CA: %v, want a certificate error", err)
	}
}
