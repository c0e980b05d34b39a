package fetch

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeS3 is an S3 GET endpoint under the test's control: it serves one object with range
// support, and each request can be given a misbehaviour first (cut the body, stall, send
// more, ignore the range, answer with an error). It tests our own retry, range and cap
// logic; behaviour against a real S3 server is in the versitygw tests.
type fakeS3 struct {
	obj  []byte
	srv  *httptest.Server
	done chan struct{}

	mu     sync.Mutex
	plan   []behaviour // one per request, in order; then every request is served well
	ranges []string    // Range header of every GET
}

// behaviour answers one request; obj is the object and start the first byte asked for.
type behaviour func(w http.ResponseWriter, r *http.Request, obj []byte, start int64)

const testBucket = "wasmfleet"

func newFakeS3(t *testing.T, obj []byte, plan ...behaviour) *fakeS3 {
	t.Helper()
	s := &fakeS3{obj: obj, plan: plan, done: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(func() {
		close(s.done)
		s.srv.Close()
	})
	return s
}

func (s *fakeS3) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/"+testBucket+"/") {
		writeError(w, http.StatusBadRequest, "InvalidRequest")
		return
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	var b behaviour = serveWell
	if len(s.plan) > 0 {
		b, s.plan = s.plan[0], s.plan[1:]
	}
	s.mu.Unlock()
	if r.URL.Path != "/"+testBucket+"/obj" {
		writeError(w, http.StatusNotFound, "NoSuchKey")
		return
	}
	var start int64
	if rg := r.Header.Get("Range"); rg != "" {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidArgument")
			return
		}
		if n >= int64(len(s.obj)) {
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
			return
		}
		start = n
	}
	b(w, r, s.obj, start)
}

func (s *fakeS3) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>fake %s</Message></Error>`, code, code)
}

// header writes the headers of a good answer for obj from start.
func header(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
	h := w.Header()
	h.Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
	h.Set("ETag", `"fake"`)
	h.Set("Content-Length", strconv.FormatInt(int64(len(obj))-start, 10))
	if r.Header.Get("Range") != "" {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(obj)-1, len(obj)))
		w.WriteHeader(http.StatusPartialContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func serveWell(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
	header(w, r, obj, start)
	w.Write(obj[start:])
}

// cutAfter sends n bytes of the body, then drops the connection.
func cutAfter(n int64) behaviour {
	return func(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
		header(w, r, obj, start)
		w.Write(obj[start : start+n])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// stallAfter sends n bytes of the body and then nothing until the client goes away.
func (s *fakeS3) stallAfter(n int64) behaviour {
	return func(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
		header(w, r, obj, start)
		w.Write(obj[start : start+n])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	}
}

// (s *fakeS3) stallHeaders sends nothing at all until the client goes away.
func (s *fakeS3) stallHeaders(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

func failWith(status int, code string) behaviour {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) { writeError(w, status, code) }
}

// ignoreRange answers every request with the whole object and 200.
func ignoreRange(w http.ResponseWriter, _ *http.Request, obj []byte, _ int64) {
	w.Header().Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
	w.WriteHeader(http.StatusOK)
	w.Write(obj)
}

// endless says no length and sends the object followed by zeros until the client leaves.
func endless(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
	w.Header().Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(obj[start:]); err != nil {
		return
	}
	zeros := make([]byte, 32<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(zeros); err != nil {
			return
		}
	}
}

// declareLarger says (and sends) extra bytes more than the object.
func declareLarger(extra int) behaviour {
	return func(w http.ResponseWriter, r *http.Request, obj []byte, start int64) {
		serveWell(w, r, append(append([]byte(nil), obj...), make([]byte, extra)...), start)
	}
}

// testFetcher talks to url with zero backoff waits, which it records.
type testFetcher struct {
	*Fetcher
	mu     sync.Mutex
	delays []time.Duration
}

func newTestFetcher(t *testing.T, url string, mod func(*Config)) *testFetcher {
	t.Helper()
	cfg := Config{Endpoint: url, Bucket: testBucket, Region: "us-east-1", Insecure: true}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	tf := &testFetcher{Fetcher: f}
	f.random = func() float64 { return 0.5 }
	f.sleep = func(ctx context.Context, d time.Duration) error {
		tf.mu.Lock()
		tf.delays = append(tf.delays, d)
		tf.mu.Unlock()
		return ctx.Err()
	}
	return tf
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
