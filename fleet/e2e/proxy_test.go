package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// s3Counter is a TCP relay in front of the S3 server that counts what crosses it: HTTP
// requests (parsed, one at a time per connection; Go's clients do not pipeline) by method,
// and the bytes in each direction. Nothing is rewritten, so request signatures stay valid.
// It is agent/proxy_test.go's relay without the throttling and the per-request log.
type s3Counter struct {
	ln      net.Listener
	backend string
	wg      sync.WaitGroup

	requests, gets, bytesUp, bytesDown atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func startS3Counter(t testing.TB, backend string) *s3Counter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Counter{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is host:port, for an S3 endpoint.
func (p *s3Counter) Addr() string { return p.ln.Addr().String() }

// counts is a snapshot of the counters.
type counts struct{ Requests, Gets, BytesUp, BytesDown int64 }

func (p *s3Counter) snapshot() counts {
	return counts{p.requests.Load(), p.gets.Load(), p.bytesUp.Load(), p.bytesDown.Load()}
}

func (c counts) sub(o counts) counts {
	return counts{c.Requests - o.Requests, c.Gets - o.Gets, c.BytesUp - o.BytesUp, c.BytesDown - o.BytesDown}
}

func (p *s3Counter) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *s3Counter) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add && p.closed {
		c.Close()
		return false
	}
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
		c.Close()
	}
	return true
}

func (p *s3Counter) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c, true) {
			continue
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c) }()
	}
}

func (p *s3Counter) serve(client net.Conn) {
	defer p.track(client, false)
	server, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil || !p.track(server, true) {
		return
	}
	defer p.track(server, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				p.bytesDown.Add(int64(n))
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	rec := &teeReader{r: client}
	br := bufio.NewReader(rec)
	for {
		req, err := http.ReadRequest(br)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		if req != nil && err == nil {
			p.requests.Add(1)
			if req.Method == http.MethodGet {
				p.gets.Add(1)
			}
		}
		if b := rec.take(); len(b) > 0 {
			p.bytesUp.Add(int64(len(b)))
			if _, werr := server.Write(b); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := server.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}

// teeReader keeps the bytes read through it until take.
type teeReader struct {
	r   io.Reader
	buf bytes.Buffer
}

func (r *teeReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.buf.Write(b[:n])
	return n, err
}

func (r *teeReader) take() []byte {
	b := bytes.Clone(r.buf.Bytes())
	r.buf.Reset()
	return b
}
