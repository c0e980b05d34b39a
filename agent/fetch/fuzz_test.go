package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/rs/zerolog"
)

// rawServer answers every request with the bytes it is given, as they are, and closes the
// connection: whatever a broken or hostile server (or something in the path) might send.
type rawServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	raw []byte
}

func newRawServer(f *testing.F) *rawServer {
	s := &rawServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		raw := s.raw
		s.mu.Unlock()
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		buf.Write(raw)
		buf.Flush()
		conn.Close()
	}))
	f.Cleanup(s.srv.Close)
	return s
}

func (s *rawServer) answer(raw []byte) {
	s.mu.Lock()
	s.raw = raw
	s.mu.Unlock()
}

// FuzzResponse feeds Download and Get every answer a server could send (status line,
// headers, body): nothing may panic or hang, Download never leaves more than the size it was
// given on disk and, when it succeeds, exactly that many bytes; Get never returns more than
// its cap.
func FuzzResponse(f *testing.F) {
	body := []byte("0123456789abcdef")
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 16\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: \"x\"\r\n\r\n" + string(body)))
	f.Add([]byte("HTTP/1.1 206 Partial Content\r\nContent-Length: 8\r\nContent-Range: bytes 8-15/16\r\n\r\n89abcdef"))
	f.Add([]byte("HTTP/1.1 206 Partial Content\r\nContent-Length: 8\r\nContent-Range: bytes 8-15/*\r\n\r\n89abcdef"))
	f.Add([]byte("HTTP/1.1 206 Partial Content\r\nContent-Length: 8\r\nContent-Range: bytes x\r\n\r\n89abcdef"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n0123"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\nffffffff\r\n"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: 84\r\n\r\n" +
		`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>        `))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 416 Requested Range Not Satisfiable\r\n\r\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	// minio-go waits up to DefaultRetryUnit after a failed request even when it makes no
	// other attempt (MaxRetries 1); here that would be most of each run.
	minio.DefaultRetryUnit, minio.DefaultRetryCap = time.Microsecond, time.Microsecond
	srv := newRawServer(f)
	dir := f.TempDir()
	fetcher, err := New(Config{Endpoint: srv.srv.URL, Bucket: testBucket, Region: "us-east-1", Insecure: true,
		IdleTimeout: 2 * time.Second, Retry: RetryPolicy{MaxAttempts: 2}}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	fetcher.sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	f.Fuzz(func(t *testing.T, raw []byte) {
		srv.answer(raw)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, have := range []int{0, 8} {
			dst := filepath.Join(dir, "obj.unverified")
			if err := os.WriteFile(dst, body[:have], 0o600); err != nil {
				t.Fatal(err)
			}
			const size = 16
			_, err := fetcher.Download(ctx, "obj", dst, size)
			if ctx.Err() != nil {
				t.Fatalf("Download did not return within 20s (have %d)", have)
			}
			fi, serr := os.Stat(dst)
			if serr != nil {
				t.Fatal(serr)
			}
			if fi.Size() > size || err == nil && fi.Size() != size {
				t.Fatalf("Download (have %d) left %d bytes for a size of %d, error %v", have, fi.Size(), size, err)
			}
		}
		got, err := fetcher.Get(ctx, "obj", 10)
		if len(got) > 10 || err != nil && len(got) > 0 {
			t.Fatalf("Get returned %d bytes (cap 10), error %v", len(got), err)
		}
	})
}
