package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const objSize = 256 << 10

func dstPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "module.wasm.unverified")
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, want %d (identical: %t)", path, len(got), len(want), bytes.Equal(got, want))
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestDownloadWhole(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj)
	f := newTestFetcher(t, s.srv.URL, nil)
	dst := dstPath(t)
	st, err := f.Download(t.Context(), "obj", dst, objSize)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, obj)
	if want := (Stats{BytesFetched: objSize, Attempts: 1}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if got := s.requests(); len(got) != 1 || got[0] != "" {
		t.Errorf("Range headers %q, want one request without a range", got)
	}
}

// Each table case misbehaves on the first requests; the download must still end with the
// object, resuming from what is on disk, and fetch no byte twice.
func TestDownloadRecovers(t *testing.T) {
	const cut = 100_000
	for _, c := range []struct {
		name     string
		plan     func(*fakeS3) []behaviour
		idle     time.Duration
		attempts int
		ranges   []string
	}{
		{
			name:     "connection cut mid-body",
			plan:     func(*fakeS3) []behaviour { return []behaviour{cutAfter(cut)} },
			attempts: 2,
			ranges:   []string{"", fmt.Sprintf("bytes=%d-", cut)},
		},
		{
			name:     "cut twice",
			plan:     func(*fakeS3) []behaviour { return []behaviour{cutAfter(cut), cutAfter(cut)} },
			attempts: 3,
			ranges:   []string{"", fmt.Sprintf("bytes=%d-", cut), fmt.Sprintf("bytes=%d-", 2*cut)},
		},
		{
			name: "5xx then cut",
			plan: func(*fakeS3) []behaviour {
				return []behaviour{failWith(500, "InternalError"), failWith(503, "SlowDown"), cutAfter(cut)}
			},
			attempts: 4,
			ranges:   []string{"", "", "", fmt.Sprintf("bytes=%d-", cut)},
		},
		{
			name:     "body stalls",
			plan:     func(s *fakeS3) []behaviour { return []behaviour{s.stallAfter(cut)} },
			idle:     200 * time.Millisecond,
			attempts: 2,
			ranges:   []string{"", fmt.Sprintf("bytes=%d-", cut)},
		},
		{
			name:     "headers stall",
			plan:     func(s *fakeS3) []behaviour { return []behaviour{s.stallHeaders} },
			idle:     200 * time.Millisecond,
			attempts: 2,
			ranges:   []string{"", ""},
		},
		{
			name: "throttled and clock skew",
			plan: func(*fakeS3) []behaviour {
				return []behaviour{failWith(429, "SlowDown"), failWith(403, "RequestTimeTooSkewed")}
			},
			attempts: 3,
			ranges:   []string{"", "", ""},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj := randomBytes(t, objSize)
			s := newFakeS3(t, obj)
			s.plan = c.plan(s)
			f := newTestFetcher(t, s.srv.URL, func(cfg *Config) { cfg.IdleTimeout = c.idle })
			dst := dstPath(t)
			st, err := f.Download(t.Context(), "obj", dst, objSize)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, obj)
			if st.Attempts != c.attempts || st.BytesFetched != objSize {
				t.Errorf("stats %+v, want %d attempts and %d bytes fetched", st, c.attempts, objSize)
			}
			if got := s.requests(); fmt.Sprint(got) != fmt.Sprint(c.ranges) {
				t.Errorf("Range headers %q, want %q", got, c.ranges)
			}
			if len(f.delays) != c.attempts-1 {
				t.Errorf("waited %d times (%v), want %d", len(f.delays), f.delays, c.attempts-1)
			}
		})
	}
}

func TestDownloadResumesFileOnDisk(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj)
	f := newTestFetcher(t, s.srv.URL, nil)
	dst := dstPath(t)
	const have = 70_000
	if err := os.WriteFile(dst, obj[:have], 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(obj)
	st, err := f.Download(t.Context(), "obj", dst, objSize, WithSHA256(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, obj)
	if want := (Stats{Existing: have, BytesFetched: objSize - have, Attempts: 1, Resumes: 1}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if got := s.requests(); len(got) != 1 || got[0] != fmt.Sprintf("bytes=%d-", have) {
		t.Errorf("Range headers %q", got)
	}

	// Complete already: no request at all.
	st, err = f.Download(t.Context(), "obj", dst, objSize, WithSHA256(hex.EncodeToString(sum[:])))
	if err != nil || st != (Stats{Existing: objSize}) {
		t.Errorf("second download: %+v, %v", st, err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests, want still 1", n)
	}
}

func TestDownloadServerIgnoresRange(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj, ignoreRange)
	f := newTestFetcher(t, s.srv.URL, nil)
	dst := dstPath(t)
	if err := os.WriteFile(dst, obj[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := f.Download(t.Context(), "obj", dst, objSize)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, obj)
	if st.BytesFetched != objSize || st.Attempts != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestDownloadLongerFileStartsOver(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj)
	f := newTestFetcher(t, s.srv.URL, nil)
	dst := dstPath(t)
	if err := os.WriteFile(dst, make([]byte, objSize+10), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := f.Download(t.Context(), "obj", dst, objSize)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, obj)
	if st.Existing != 0 || st.Resumes != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Errors another attempt cannot fix come back at once, typed, with dst left empty when
// its bytes cannot be the object.
func TestDownloadPermanentErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		key      string
		plan     []behaviour
		size     int64
		onDisk   int
		want     error
		maxBytes int64 // most bytes fetched
	}{
		{name: "no such key", key: "missing", size: objSize, want: ErrNotFound},
		{name: "404 without body", plan: []behaviour{failWith(404, "")}, size: objSize, want: ErrNotFound},
		{name: "access denied", plan: []behaviour{failWith(403, "AccessDenied")}, size: objSize, want: ErrAccessDenied},
		{name: "bad signature", plan: []behaviour{failWith(403, "SignatureDoesNotMatch")}, size: objSize, want: ErrAccessDenied},
		{name: "object declared larger", plan: []behaviour{declareLarger(1)}, size: objSize, want: ErrTooLarge},
		{name: "endless body", plan: []behaviour{endless}, size: objSize, want: ErrTooLarge, maxBytes: objSize + 1},
		{name: "object smaller", size: objSize + 1, want: ErrTooSmall},
		{name: "resume past the end", size: objSize + 10, onDisk: objSize + 5, want: ErrTooSmall},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj := randomBytes(t, objSize)
			s := newFakeS3(t, obj, c.plan...)
			f := newTestFetcher(t, s.srv.URL, nil)
			dst := dstPath(t)
			if c.onDisk > 0 {
				if err := os.WriteFile(dst, make([]byte, c.onDisk), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key := c.key
			if key == "" {
				key = "obj"
			}
			st, err := f.Download(t.Context(), key, dst, c.size)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			t.Logf("error: %v", err)
			if st.Attempts != 1 || len(f.delays) != 0 {
				t.Errorf("%d attempts, %d waits; want 1 and none", st.Attempts, len(f.delays))
			}
			if st.BytesFetched > c.maxBytes {
				t.Errorf("fetched %d bytes, want at most %d", st.BytesFetched, c.maxBytes)
			}
			if c.want == ErrTooLarge || c.want == ErrTooSmall {
				if n := fileSize(t, dst); n != 0 {
					t.Errorf("dst has %d bytes after %v; want it emptied", n, c.want)
				}
			}
		})
	}
}

func TestDownloadSHA256Mismatch(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj)
	f := newTestFetcher(t, s.srv.URL, nil)
	dst := dstPath(t)
	// A wrong prefix on disk from an earlier, bad transfer.
	if err := os.WriteFile(dst, make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(obj)
	_, err := f.Download(t.Context(), "obj", dst, objSize, WithSHA256(hex.EncodeToString(sum[:])))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("error %v, want ErrDigestMismatch", err)
	}
	if n := fileSize(t, dst); n != 0 {
		t.Fatalf("dst has %d bytes after a mismatch, want 0", n)
	}
	// The next try starts afresh and succeeds.
	if _, err := f.Download(t.Context(), "obj", dst, objSize, WithSHA256(hex.EncodeToString(sum[:]))); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, obj)

	if _, err := f.Download(t.Context(), "obj", dst, objSize, WithSHA256("not hex")); err == nil {
		t.Error("a malformed digest was accepted")
	}
}

func TestDownloadStopsWithContext(t *testing.T) {
	obj := randomBytes(t, 1000)
	s := newFakeS3(t, obj)
	for range 100 {
		s.plan = append(s.plan, failWith(500, "InternalError"))
	}
	f := newTestFetcher(t, s.srv.URL, nil)
	ctx, cancel := context.WithCancel(t.Context())
	f.sleep = func(ctx context.Context, d time.Duration) error {
		if len(s.requests()) == 3 {
			cancel()
		}
		return ctx.Err()
	}
	st, err := f.Download(ctx, "obj", dstPath(t), 1000)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if st.Attempts != 3 {
		t.Errorf("%d attempts, want 3", st.Attempts)
	}
}

func TestDownloadMaxAttempts(t *testing.T) {
	obj := randomBytes(t, 1000)
	s := newFakeS3(t, obj, failWith(500, "InternalError"), failWith(500, "InternalError"), failWith(500, "InternalError"))
	f := newTestFetcher(t, s.srv.URL, func(c *Config) { c.Retry.MaxAttempts = 2 })
	st, err := f.Download(t.Context(), "obj", dstPath(t), 1000)
	if err == nil || !strings.Contains(err.Error(), "giving up after 2 attempts") {
		t.Fatalf("error %v", err)
	}
	if st.Attempts != 2 {
		t.Errorf("%d attempts", st.Attempts)
	}
}

// MaxAttempts counts attempts in a row that brought nothing: a transfer cut again and again
// but moving bytes each time is not given up.
func TestDownloadMaxAttemptsCountsFruitlessOnly(t *testing.T) {
	obj := randomBytes(t, 10_000)
	s := newFakeS3(t, obj, cutAfter(1000), cutAfter(1000), failWith(500, "InternalError"), cutAfter(1000), cutAfter(1000))
	f := newTestFetcher(t, s.srv.URL, func(c *Config) { c.Retry.MaxAttempts = 2 })
	st, err := f.Download(t.Context(), "obj", dstPath(t), int64(len(obj)))
	if err != nil {
		t.Fatalf("a download cut 4 times with progress, one failure between: %v", err)
	}
	if st.Attempts != 6 {
		t.Errorf("%d attempts, want 6", st.Attempts)
	}
}

// A server that ignores ranges and always breaks off before the bytes kept: each answer
// brings bytes but the file never grows, which is no progress; Download gives up after
// MaxAttempts instead of asking again for ever (found by FuzzResponse).
func TestDownloadIgnoredRangeCutShortIsNoProgress(t *testing.T) {
	obj := randomBytes(t, 10_000)
	cutWhole := func(w http.ResponseWriter, r *http.Request, obj []byte, _ int64) {
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		w.WriteHeader(http.StatusOK)
		w.Write(obj[:4000])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	plan := make([]behaviour, 20)
	for i := range plan {
		plan[i] = cutWhole
	}
	s := newFakeS3(t, obj, plan...)
	f := newTestFetcher(t, s.srv.URL, func(c *Config) { c.Retry.MaxAttempts = 3 })
	dst := dstPath(t)
	if err := os.WriteFile(dst, obj[:6000], 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := f.Download(t.Context(), "obj", dst, int64(len(obj)))
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("error %v, want giving up after 3 attempts", err)
	}
	if st.Attempts != 3 {
		t.Errorf("%d attempts, want 3", st.Attempts)
	}
}

// A transfer that makes progress restarts the backoff; failures in a row grow it.
func TestRetryBackoffAfterProgress(t *testing.T) {
	obj := randomBytes(t, objSize)
	s := newFakeS3(t, obj,
		failWith(500, "InternalError"), failWith(500, "InternalError"), failWith(500, "InternalError"),
		cutAfter(1000), cutAfter(1000), failWith(500, "InternalError"))
	f := newTestFetcher(t, s.srv.URL, nil)
	if _, err := f.Download(t.Context(), "obj", dstPath(t), objSize); err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	// random() is 0.5: three quarters of each ceiling 200ms, 400ms, 800ms...
	want := []time.Duration{150 * ms, 300 * ms, 600 * ms, 150 * ms, 150 * ms, 300 * ms}
	if fmt.Sprint(f.delays) != fmt.Sprint(want) {
		t.Errorf("delays %v, want %v", f.delays, want)
	}
}

func TestDelay(t *testing.T) {
	p, err := RetryPolicy{}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if p != (RetryPolicy{Base: DefaultRetryBase, Max: DefaultRetryMax, Multiplier: DefaultRetryMultiplier}) {
		t.Errorf("defaults %+v", p)
	}
	ms := time.Millisecond
	for _, c := range []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{0, 0, 100 * ms},
		{0, 0.999999, 200 * ms},
		{1, 0, 200 * ms},
		{2, 0.5, 600 * ms},
		{7, 0, 12800 * ms},
		{8, 0, 15 * time.Second}, // 51.2s capped to 30s
		{8, 0.999999, 30 * time.Second},
		{1000, 0.5, 22500 * ms}, // no overflow
	} {
		got := p.Delay(c.failures, c.r)
		if d := got - c.want; d < -ms || d > ms {
			t.Errorf("Delay(%d, %g) = %s, want %s", c.failures, c.r, got, c.want)
		}
	}
	// Every delay lies in [ceiling/2, ceiling].
	q := RetryPolicy{Base: 10 * ms, Max: time.Second, Multiplier: 3}
	for n := range 10 {
		ceiling := min(time.Second, time.Duration(float64(10*ms)*pow(3, n)))
		for _, r := range []float64{0, 0.25, 0.5, 0.75, 0.9999} {
			if d := q.Delay(n, r); d < ceiling/2 || d > ceiling {
				t.Errorf("Delay(%d, %g) = %s, outside [%s, %s]", n, r, d, ceiling/2, ceiling)
			}
		}
	}
}

func pow(x float64, n int) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

func TestGet(t *testing.T) {
	obj := []byte(`{"payloadType":"application/vnd.in-toto+json"}`)
	s := newFakeS3(t, obj, cutAfter(10), failWith(502, ""))
	f := newTestFetcher(t, s.srv.URL, nil)
	got, err := f.Get(t.Context(), "obj", 1<<20)
	if err != nil || !bytes.Equal(got, obj) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if n := len(s.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if got, err := f.Get(t.Context(), "obj", int64(len(obj))); err != nil || !bytes.Equal(got, obj) {
		t.Errorf("Get with max = size: %q, %v", got, err)
	}
	if _, err := f.Get(t.Context(), "obj", int64(len(obj))-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Get over max: %v, want ErrTooLarge", err)
	}
	if _, err := f.Get(t.Context(), "missing", 1<<20); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get missing: %v, want ErrNotFound", err)
	}
	s.plan = []behaviour{endless}
	if _, err := f.Get(t.Context(), "obj", 4096); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Get endless: %v, want ErrTooLarge", err)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Endpoint: "s3.example.com", Bucket: "b"}, ""},
		{Config{Endpoint: "s3.example.com:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"}, ""},
		{Config{Endpoint: "https://s3.example.com", Bucket: "b"}, ""},
		{Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", Insecure: true}, ""},
		{Config{Endpoint: "[::1]:9000", Bucket: "b", Insecure: true}, ""},
		{Config{Bucket: "b"}, "endpoint is required"},
		{Config{Endpoint: "s3.example.com"}, "bucket is required"},
		{Config{Endpoint: "http://s3.example.com", Bucket: "b"}, "insecure is not set"},
		{Config{Endpoint: "https://s3.example.com", Bucket: "b", Insecure: true}, "is https"},
		{Config{Endpoint: "ftp://s3.example.com", Bucket: "b"}, "scheme"},
		{Config{Endpoint: "https://s3.example.com/path", Bucket: "b"}, "only scheme"},
		{Config{Endpoint: "s3.example.com/path", Bucket: "b"}, "not host[:port]"},
		{Config{Endpoint: "s3.example.com", Bucket: "b", AccessKey: "a"}, "both"},
		{Config{Endpoint: "s3.example.com", Bucket: "b", CAFile: "ca.pem", Insecure: true}, "needs https"},
		{Config{Endpoint: "s3.example.com", Bucket: "b", Retry: RetryPolicy{Multiplier: 0.5}}, "below 1"},
		{Config{Endpoint: "s3.example.com", Bucket: "b", Retry: RetryPolicy{Base: time.Minute}}, "below base"},
		{Config{Endpoint: "s3.example.com", Bucket: "b", IdleTimeout: -1}, "negative"},
	} {
		err := c.cfg.Validate()
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: Validate() = %v, want %q", c.cfg, err, c.wantErr)
		}
	}
}

func TestSecretNeverShown(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
	cfg := Config{Endpoint: "s3.example.com", Bucket: "b", AccessKey: "AKIAEXAMPLE", SecretKey: secret}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), cfg.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("secret in %q", s)
		}
	}
	var logs bytes.Buffer
	if _, err := New(cfg, zerolog.New(&logs).Level(zerolog.TraceLevel)); err != nil {
		t.Fatal(err)
	}
	if logs.Len() == 0 || strings.Contains(logs.String(), secret) {
		t.Errorf("logs %q: empty, or hold the secret", logs.String())
	}
}

func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Endpoint: "s3.example.com", Bucket: "b", CAFile: bad}
	if _, err := New(cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("New with a CA file without certificates: %v", err)
	}
	cfg.CAFile = filepath.Join(dir, "missing.pem")
	if _, err := New(cfg, zerolog.Nop()); err == nil {
		t.Error("New with a missing CA file succeeded")
	}
}
