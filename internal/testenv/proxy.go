package testenv

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

// Proxy is a TCP relay on a free loopback port in front of an HTTP/1.1 server (versitygw),
// for tests that must see or spoil what crosses the link. It parses each request it
// forwards (method, path, Range) and counts the bytes of the answer (status line, headers
// and body) and of the requests; it can throttle the answers, cut every open connection as
// a link that goes down would, and inject faults into chosen requests: refuse them, answer
// them itself, or cut or corrupt the server's answer at a given body offset.
//
// Bytes are relayed as they are unless a fault says otherwise, so request signatures stay
// valid. Requests are forwarded one at a time per connection, after they have been parsed,
// so every byte of an answer is counted for the request it answers (Go's HTTP clients do not
// pipeline). A connection whose server side ends (or cannot be dialled) has its client side
// closed too.
type Proxy struct {
	t       testing.TB
	ln      net.Listener
	backend string

	mu       sync.Mutex
	rate     int64 // server→client bytes per second, 0 for no limit
	requests []*ProxiedRequest
	faults   []*faultState
	conns    map[net.Conn]bool
	refused  int
	up, down int64 // bytes client→server and server→client, over all connections
	closed   bool
	wg       sync.WaitGroup
}

// ProxiedRequest is one HTTP request the proxy saw and what came back for it.
type ProxiedRequest struct {
	Method, Path, Range string
	At                  time.Time
	// Bytes counts the server→client bytes relayed for it (status line and headers
	// included): what crossed the link, after any fault.
	Bytes int64
	// Fault names the fault applied to it ("" for none).
	Fault string

	headerEnd int64 // offset of the body in the answer; -1 until the headers have passed
	tail      []byte
}

func (r ProxiedRequest) String() string {
	s := r.Method + " " + r.Path
	if r.Range != "" {
		s += " (Range " + r.Range + ")"
	}
	if r.Fault != "" {
		s += " [" + r.Fault + "]"
	}
	return fmt.Sprintf("%s: %d bytes back", s, r.Bytes)
}

// FaultKind is what a Fault does to the requests it matches.
type FaultKind int

const (
	// Refuse closes the client's connection instead of forwarding the request: the client
	// sees its connection end with no answer.
	Refuse FaultKind = iota + 1
	// Respond answers the request with Fault.Response instead of forwarding it, then
	// closes the connection.
	Respond
	// CutBody forwards the request and relays the answer up to Fault.Offset bytes of its
	// body, then closes both sides: a transfer that breaks off.
	CutBody
	// CorruptBody forwards the request and relays the whole answer, with the body byte at
	// Fault.Offset inverted (every bit flipped): a transfer that arrives damaged.
	CorruptBody
)

func (k FaultKind) String() string {
	switch k {
	case Refuse:
		return "refuse"
	case Respond:
		return "respond"
	case CutBody:
		return "cut-body"
	case CorruptBody:
		return "corrupt-body"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is a misbehaviour applied to requests that match it. A request matches when its
// method is Method (any if empty) and its path ends with PathSuffix (any if empty). Each
// fault applies to the first Times matching requests (every one when Times is 0) and then
// stays in place, spent. When several faults match a request, the first added applies.
type Fault struct {
	Kind       FaultKind
	Method     string
	PathSuffix string
	Times      int
	// Offset is the body offset for CutBody and CorruptBody.
	Offset int64
	// Response is the raw answer for Respond (status line, headers, body).
	Response []byte
}

type faultState struct {
	Fault
	applied int
}

// StartProxy listens on a free loopback port and relays to backend (host:port). It is
// closed when the test ends.
func StartProxy(t testing.TB, backend string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy: %v", err)
	}
	p := &Proxy{t: t, ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port, for an S3 endpoint.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetRate limits what the server sends to bytesPerSecond over all connections (0: none).
func (p *Proxy) SetRate(bytesPerSecond int64) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

// AddFault injects f into the requests that follow.
func (p *Proxy) AddFault(f Fault) {
	if f.Kind < Refuse || f.Kind > CorruptBody {
		p.t.Fatalf("testenv: proxy: unknown fault kind %v", f.Kind)
	}
	p.mu.Lock()
	p.faults = append(p.faults, &faultState{Fault: f})
	p.mu.Unlock()
}

// ClearFaults removes every fault.
func (p *Proxy) ClearFaults() {
	p.mu.Lock()
	p.faults = nil
	p.mu.Unlock()
}

// FaultsApplied counts the requests a fault was applied to so far.
func (p *Proxy) FaultsApplied() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.faults {
		n += f.applied
	}
	return n
}

// Requests returns every request forwarded (or answered by a fault) so far, in order.
func (p *Proxy) Requests() []ProxiedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProxiedRequest, len(p.requests))
	for i, r := range p.requests {
		out[i] = *r
		out[i].tail = nil
	}
	return out
}

// Refused counts client connections closed at once because the server could not be
// reached.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// ProxyTotals is what crossed the proxy so far.
type ProxyTotals struct {
	Requests, Gets  int64
	BytesUp         int64 // client→server, requests and their bodies
	BytesDown       int64 // server→client
	RefusedConnects int64
}

// Totals counts the requests and bytes that crossed the proxy so far.
func (p *Proxy) Totals() ProxyTotals {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := ProxyTotals{Requests: int64(len(p.requests)), BytesUp: p.up, BytesDown: p.down, RefusedConnects: int64(p.refused)}
	for _, r := range p.requests {
		if r.Method == http.MethodGet {
			t.Gets++
		}
	}
	return t
}

// BytesFor sums the bytes sent back for requests whose path ends with suffix.
func (p *Proxy) BytesFor(suffix string) (bytes int64, requests int) {
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
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
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

// match returns the fault for a request, counting it as applied, or nil. Callers hold p.mu.
func (p *Proxy) match(method, path string) *Fault {
	for _, f := range p.faults {
		if f.Times > 0 && f.applied >= f.Times {
			continue
		}
		if (f.Method == "" || f.Method == method) && strings.HasSuffix(path, f.PathSuffix) {
			f.applied++
			c := f.Fault
			return &c
		}
	}
	return nil
}

// exchange is the request a connection is relaying the answer of, and its fault.
type exchange struct {
	mu    sync.Mutex
	r     *ProxiedRequest
	fault *Fault
}

// serve relays one client connection.
func (p *Proxy) serve(client net.Conn) {
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

	var cur exchange
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close() // the server side ended (or a fault cut it): cut the client's too
		p.relayAnswers(server, client, &cur)
	}()

	rec := &recordingReader{r: client}
	br := bufio.NewReader(rec)
	for {
		req, err := http.ReadRequest(br)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		var fault *Fault
		if req != nil && err == nil {
			r := &ProxiedRequest{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range"), At: time.Now(), headerEnd: -1}
			p.mu.Lock()
			p.requests = append(p.requests, r)
			if fault = p.match(r.Method, r.Path); fault != nil {
				r.Fault = fault.Kind.String()
			}
			p.mu.Unlock()
			cur.mu.Lock()
			cur.r, cur.fault = r, fault
			cur.mu.Unlock()
		}
		b := rec.take()
		p.mu.Lock()
		p.up += int64(len(b))
		p.mu.Unlock()
		if fault != nil && (fault.Kind == Refuse || fault.Kind == Respond) {
			if fault.Kind == Respond {
				client.Write(fault.Response)
				p.count(&cur, int64(len(fault.Response)))
			}
			break
		}
		if len(b) > 0 {
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
	client.Close()
	<-done
}

// count adds n answer bytes to the current request and the totals.
func (p *Proxy) count(cur *exchange, n int64) {
	cur.mu.Lock()
	r := cur.r
	cur.mu.Unlock()
	p.mu.Lock()
	p.down += n
	if r != nil {
		r.Bytes += n
	}
	p.mu.Unlock()
}

// relayAnswers copies the server's answers to the client, applying the current request's
// body fault and the rate limit, until either side ends.
func (p *Proxy) relayAnswers(server, client net.Conn, cur *exchange) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			cur.mu.Lock()
			r, fault := cur.r, cur.fault
			cur.mu.Unlock()
			cut := false
			if r != nil {
				p.mu.Lock()
				start := r.Bytes // answer offset of chunk[0]
				if r.headerEnd < 0 {
					// The body starts after the first blank line of the answer.
					seen := append(r.tail, chunk...)
					if i := bytes.Index(seen, []byte("\r\n\r\n")); i >= 0 {
						r.headerEnd = start - int64(len(r.tail)) + int64(i) + 4
						r.tail = nil
					} else if len(seen) > 3 {
						r.tail = append([]byte(nil), seen[len(seen)-3:]...)
					} else {
						r.tail = seen
					}
				}
				headerEnd := r.headerEnd
				p.mu.Unlock()
				if fault != nil && headerEnd >= 0 {
					at := headerEnd + fault.Offset - start // index of the faulted byte in chunk
					switch fault.Kind {
					case CutBody:
						if at < int64(len(chunk)) {
							chunk, cut = chunk[:max(at, 0)], true
						}
					case CorruptBody:
						if at >= 0 && at < int64(len(chunk)) {
							chunk[at] = ^chunk[at]
						}
					}
				}
			}
			if len(chunk) > 0 {
				p.count(cur, int64(len(chunk)))
				if _, werr := client.Write(chunk); werr != nil {
					return
				}
			}
			if cut {
				server.Close()
				return
			}
			p.mu.Lock()
			rate := p.rate
			p.mu.Unlock()
			if rate > 0 {
				// Throttle: each chunk takes at least its share of a second.
				time.Sleep(time.Duration(int64(len(chunk)) * int64(time.Second) / rate))
			}
		}
		if err != nil {
			return
		}
	}
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
