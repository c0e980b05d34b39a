package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// gatedConn is a net.Conn whose writes wait for its gate to open and are recorded; reads
// see EOF. It stands for a broker that is slow to read.
type gatedConn struct {
	net.Conn // nil: only what bufferedConn calls is implemented
	gate     chan struct{}
	mu       sync.Mutex
	writes   [][]byte
	err      error
	deadline time.Time
	closed   chan struct{}
	once     sync.Once
}

func newGatedConn() *gatedConn {
	return &gatedConn{gate: make(chan struct{}), closed: make(chan struct{})}
}

func (c *gatedConn) Read([]byte) (int, error) { <-c.closed; return 0, io.EOF }

func (c *gatedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	var expired <-chan time.Time
	if !c.deadline.IsZero() {
		expired = time.After(time.Until(c.deadline))
	}
	c.mu.Unlock()
	select {
	case <-c.gate:
	case <-c.closed:
		return 0, net.ErrClosed
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *gatedConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func (c *gatedConn) recorded() (writes int, all []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes), bytes.Join(c.writes, nil)
}

// TestBufferedConnOrder writes from several goroutines through a real loopback connection
// and requires every Write to arrive whole and each goroutine's in order.
func TestBufferedConnOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c := newBufferedConn(raw, 0)
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := fmt.Fprintf(c, "<%d:%06d>", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(peer); got <- b }()
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	next := make([]int, writers)
	for len(b) > 0 {
		var w, i int
		if _, err := fmt.Sscanf(string(b[:10]), "<%d:%06d>", &w, &i); err != nil {
			t.Fatalf("a write arrived torn at %q: %v", b[:min(len(b), 20)], err)
		}
		if w < 0 || w >= writers || i != next[w] {
			t.Fatalf("writer %d: got record %d, want %d", w, i, next[w])
		}
		next[w]++
		b = b[10:]
	}
	for w, n := range next {
		if n != each {
			t.Errorf("writer %d: %d of %d records arrived", w, n, each)
		}
	}
}

// TestBufferedConnCoalesces: what is written while the connection is busy goes out in one
// write.
func TestBufferedConnCoalesces(t *testing.T) {
	g := newGatedConn()
	c := newBufferedConn(g, 0)
	for i := range 100 {
		if _, err := fmt.Fprintf(c, "%03d", i); err != nil {
			t.Fatal(err)
		}
	}
	close(g.gate)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	writes, all := g.recorded()
	var want bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&want, "%03d", i)
	}
	if !bytes.Equal(all, want.Bytes()) {
		t.Fatalf("sent %q, want %q", all, want.Bytes())
	}
	// The first Write starts a write of its own bytes, which may or may not have taken some
	// of the next; the rest wait for it and go out together.
	if writes > 2 {
		t.Errorf("100 writes while the connection was busy took %d writes to send, want at most 2", writes)
	}
}

// TestBufferedConnBound: a Write waits while the queue is full, and goes on once the
// connection takes it.
func TestBufferedConnBound(t *testing.T) {
	g := newGatedConn()
	c := newBufferedConn(g, 0)
	chunk := make([]byte, 4<<10)
	for range connWriteQueue / len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := c.Write(chunk); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a Write past the bound returned (%v) while nothing could be sent", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, all := g.recorded(); len(all) != connWriteQueue+len(chunk) {
		t.Errorf("sent %d bytes, want %d", len(all), connWriteQueue+len(chunk))
	}
}

// TestBufferedConnErrors: a failed write fails every later Write, and Close on a
// connection that takes nothing returns after connCloseFlush.
func TestBufferedConnErrors(t *testing.T) {
	t.Run("write error", func(t *testing.T) {
		g := newGatedConn()
		broken := errors.New("connection reset")
		g.err = broken
		close(g.gate)
		c := newBufferedConn(g, 0)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatalf("the first Write failed before anything was sent: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := c.Write([]byte("y"))
			if errors.Is(err, broken) {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("Write after a failed write: %v, want %v", err, broken)
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
	})
	t.Run("close stalled", func(t *testing.T) {
		g := newGatedConn()
		c := newBufferedConn(g, 0)
		if _, err := c.Write([]byte("never sent")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.Close()
		if d := time.Since(start); d < connCloseFlush || d > connCloseFlush+time.Second {
			t.Errorf("Close with a stalled connection took %v, want about %v", d, connCloseFlush)
		}
		if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close: %v, want net.ErrClosed", err)
		}
	})
}

// TestBufferedConnWriteTimeout: with a broker that reads nothing, the batch being written
// fails after the connection's write timeout, and so does every later Write (paho's ping,
// here), even one that was waiting for room; paho's own write deadlines change nothing.
// Close then returns at once.
func TestBufferedConnWriteTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	g := newGatedConn()
	c := newBufferedConn(g, timeout)
	if err := c.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// A publish bigger than the bound is taken whole, then the ping waits for room.
	if _, err := c.Write(make([]byte, connWriteQueue+1)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Write([]byte{0xc0, 0})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a Write behind a stalled batch: %v, want a deadline error", err)
	}
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Errorf("the stalled write failed after %v, want about %v", d, timeout)
	}
	start = time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close after a failed write took %v", d)
	}
	select {
	case <-c.done:
	default:
		t.Error("done is not closed after Close")
	}
}

// TestBufferedConnCloseFlushes: Close sends what was queued before it closes, even when
// the broker starts reading only after Close was called.
func TestBufferedConnCloseFlushes(t *testing.T) {
	g := newGatedConn()
	c := newBufferedConn(g, 5*time.Second)
	if _, err := c.Write([]byte("publish")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{0xe0, 0}); err != nil { // DISCONNECT
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the queue was written", err)
	case <-time.After(1500 * time.Millisecond): // longer than connCloseFlush
	}
	close(g.gate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, all := g.recorded(); string(all) != "publish\xe0\x00" {
		t.Errorf("sent %q, want the publish and the DISCONNECT", all)
	}
}
