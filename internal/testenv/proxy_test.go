package testenv_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// The proxy is tested against an in-process HTTP server: what is under test is the relay.

func proxyBackend(t *testing.T, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "obj", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func proxyBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// get fetches path through the proxy on a fresh connection and returns the status, the
// body bytes that arrived and the read error.
func get(t *testing.T, p *testenv.Proxy, path, rng string) (int, []byte, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+p.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestProxyRelaysAndCounts(t *testing.T) {
	body := proxyBody(100_000)
	p := testenv.StartProxy(t, proxyBackend(t, body).Listener.Addr().String())
	code, got, err := get(t, p, "/b/obj", "")
	if err != nil || code != 200 || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d, %d bytes, %v", code, len(got), err)
	}
	code, got, err = get(t, p, "/b/obj", "bytes=99000-")
	if err != nil || code != 206 || !bytes.Equal(got, body[99000:]) {
		t.Fatalf("ranged GET: %d, %d bytes, %v", code, len(got), err)
	}
	reqs := p.Requests()
	if len(reqs) != 2 || reqs[1].Range != "bytes=99000-" || reqs[0].Bytes <= int64(len(body)) {
		t.Fatalf("requests %v", reqs)
	}
	n, count := p.BytesFor("/obj")
	tot := p.Totals()
	if count != 2 || n != reqs[0].Bytes+reqs[1].Bytes || tot.Requests != 2 || tot.Gets != 2 || tot.BytesDown != n || tot.BytesUp == 0 {
		t.Fatalf("BytesFor %d over %d requests; totals %+v", n, count, tot)
	}
}

func TestProxyCutBody(t *testing.T) {
	body := proxyBody(200_000)
	p := testenv.StartProxy(t, proxyBackend(t, body).Listener.Addr().String())
	p.AddFault(testenv.Fault{Kind: testenv.CutBody, PathSuffix: "/obj", Offset: 70_000, Times: 1})
	code, got, err := get(t, p, "/b/obj", "")
	if code != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, body[:70_000]) {
		t.Fatalf("cut GET: %d, %d bytes, %v; want 200 with the first 70000 bytes and an unexpected EOF", code, len(got), err)
	}
	// Spent after one request: the next passes whole.
	if code, got, err := get(t, p, "/b/obj", ""); err != nil || code != 200 || !bytes.Equal(got, body) {
		t.Fatalf("GET after the fault: %d, %d bytes, %v", code, len(got), err)
	}
	if r := p.Requests(); len(r) != 2 || r[0].Fault != "cut-body" || r[1].Fault != "" || p.FaultsApplied() != 1 {
		t.Fatalf("requests %v, %d faults applied", r, p.FaultsApplied())
	}
}

func TestProxyCorruptBody(t *testing.T) {
	body := proxyBody(50_000)
	p := testenv.StartProxy(t, proxyBackend(t, body).Listener.Addr().String())
	p.AddFault(testenv.Fault{Kind: testenv.CorruptBody, Method: http.MethodGet, Offset: 40_001})
	code, got, err := get(t, p, "/b/obj", "")
	if err != nil || code != 200 || len(got) != len(body) {
		t.Fatalf("corrupt GET: %d, %d bytes, %v", code, len(got), err)
	}
	for i := range body {
		if want := body[i]; i == 40_001 {
			want = ^want
			if got[i] != want {
				t.Fatalf("byte %d is %#x, want %#x (inverted)", i, got[i], want)
			}
		} else if got[i] != want {
			t.Fatalf("byte %d changed: %#x, want %#x", i, got[i], want)
		}
	}
}

func TestProxyRespondAndRefuse(t *testing.T) {
	p := testenv.StartProxy(t, proxyBackend(t, proxyBody(10)).Listener.Addr().String())
	p.AddFault(testenv.Fault{Kind: testenv.Respond, PathSuffix: "/a", Times: 1,
		Response: []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")})
	p.AddFault(testenv.Fault{Kind: testenv.Refuse, PathSuffix: "/b", Times: 1})
	if code, got, err := get(t, p, "/a", ""); err != nil || code != 503 || string(got) != "busy" {
		t.Fatalf("Respond: %d %q %v", code, got, err)
	}
	if _, _, err := get(t, p, "/b", ""); err == nil {
		t.Fatal("Refuse: the request got an answer")
	}
	if code, _, err := get(t, p, "/b", ""); err != nil || code != 200 {
		t.Fatalf("after the fault: %d %v", code, err)
	}
}

func TestProxyServerDownAndCut(t *testing.T) {
	// A backend address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := testenv.StartProxy(t, addr)
	if _, _, err := get(t, p, "/x", ""); err == nil {
		t.Fatal("a request through a proxy to nothing got an answer")
	}
	if p.Refused() != 1 {
		t.Fatalf("Refused() = %d, want 1", p.Refused())
	}

	// Cut ends a transfer in the middle: throttled to 100 KB/s, a 1 MB body is still
	// flowing when the link goes.
	body := proxyBody(1 << 20)
	p = testenv.StartProxy(t, proxyBackend(t, body).Listener.Addr().String())
	p.SetRate(100 << 10)
	errc := make(chan error, 1)
	go func() { _, _, err := get(t, p, "/obj", ""); errc <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := p.BytesFor("/obj"); b > 10_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no bytes through the throttled proxy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Cut()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("transfer after Cut: %v, want an EOF", err)
	}
}
