package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// s3Proxy is a TCP relay between the agent and the S3 server, for tests that must see what
// the agent fetched: it parses each HTTP request it forwards (method, path, Range) and
// counts the bytes of the answer the server sends back (status line, headers and body), so
// a test can tell how much of an object crossed the wire. It can throttle the server's
// answers, so that a test can cut a transfer in the middle. Bytes are relayed as they are;
// nothing is rewritten, so request signatures stay valid.
//
// A connection whose server side ends (or cannot be dialled) has its client side closed
// too, as a cut link would.
type s3Proxy struct {
	t       testing.TB
	ln      net.Listener
	backend string

	mu       sync.Mutex
	rate     int64 // server→client bytes per second, 0 for no limit
	requests []*proxiedRequest
	conns    map[net.Conn]bool
	refused  int // client connections closed because the server could not be reached
	closed   bool
	wg       sync.WaitGroup
}

// proxiedRequest is one HTTP request the proxy forwarded and what came back for it.
type proxiedRequest struct {
	Method, Path, Range string
	At                  time.Time
	Bytes               int64 // server→client bytes relayed while this was the connection's last request
}

func (r proxiedRequest) String() string {
	s := r.Method + " " + r.Path
	if r.Range != "" {
		s += " (Range " + r.Range + ")"
	}
	return fmt.Sprintf("%s: %d bytes back", s, r.Bytes)
}

// startS3Proxy listens on a free loopback port and relays to backend (host:port). It is
// closed when the test ends.
func startS3Proxy(t testing.TB, backend string) *s3Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Proxy{t: t, ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port, for cfg.S3.Endpoint.
func (p *s3Proxy) Addr() string { return p.ln.Addr().String() }

// SetRate limits what the server sends to bytesPerSecond over all connections (0: none).
func (p *s3Proxy) SetRate(bytesPerSecond int64) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

// Requests returns every request forwarded so far, in order.
func (p *s3Proxy) Requests() []proxiedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]proxiedRequest, len(p.requests))
	for i, r := range p.requests {
		out[i] = *r
	}
	return out
}

// Refused counts client connections closed at once because the server was down.
func (p *s3Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// BytesFor sums the bytes sent back for requests whose path ends with suffix.
func (p *s3Proxy) BytesFor(suffix string) (bytes int64, requests int) {
	for _, r := range p.Requests() {
		if strings.HasSuffix(r.Path, suffix) {
			bytes += r.Bytes
			requests++
		}
	}
	return bytes, requests
}

// Cut closes every open connection, on both sides, as a link that goes down would: what
// the server had sent and the proxy not yet relayed is lost.
func (p *s3Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *s3Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *s3Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *s3Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *s3Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c) }()
	}
}

// serve relays one client connection. Requests are forwarded one at a time, after they
// have been parsed, so that every byte of an answer is counted for the request it answers
// (HTTP/1.1 clients such as Go's do not pipeline).
func (p *s3Proxy) serve(client net.Conn) {
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		return // the server is down: the client sees its connection closed
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	var cur struct {
		sync.Mutex
		r *proxiedRequest
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close() // the server side ended: cut the client's too
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				cur.Lock()
				if cur.r != nil {
					p.mu.Lock()
					cur.r.Bytes += int64(n)
					p.mu.Unlock()
				}
				cur.Unlock()
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
				p.mu.Lock()
				rate := p.rate
				p.mu.Unlock()
				if rate > 0 {
					// Throttle: each chunk takes at least its share of a second.
					time.Sleep(time.Duration(int64(n) * int64(time.Second) / rate))
				}
			}
			if err != nil {
				return
			}
		}
	}()

	rec := &recordingReader{r: client}
	br := bufio.NewReader(rec)
	for {
		req, err := http.ReadRequest(br)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		if req != nil && err == nil {
			r := &proxiedRequest{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range"), At: time.Now()}
			p.mu.Lock()
			p.requests = append(p.requests, r)
			p.mu.Unlock()
			cur.Lock()
			cur.r = r
			cur.Unlock()
		}
		if b := rec.take(); len(b) > 0 {
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

// recordingReader keeps the bytes read through it until take.
type recordingReader struct {
	r   io.Reader
	buf bytes.Buffer
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

func (r *recordingReader) take() []byte {
	b := bytes.Clone(r.buf.Bytes())
	r.buf.Reset()
	return b
}
