package agent

import (
	"bufio"
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/net/proxy"
)

// connReadBuffer is the read buffer of a broker connection: enough for a burst of small
// packets in one read.
const connReadBuffer = 8 << 10

// openBrokerConn dials a broker as paho does (all_proxy honoured; TLS for ssl, tls and
// mqtts) and buffers what is read from it. paho reads every packet's fixed header a byte at
// a time from the connection: unbuffered, that is four or more read syscalls a packet, most
// of the agent's cost per event on a busy broker.
func openBrokerConn(u *url.URL, o mqtt.ClientOptions) (*bufferedConn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var conn net.Conn
	var err error
	switch u.Scheme {
	case "tcp", "mqtt":
		conn, err = proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
	case "ssl", "tls", "mqtts":
		if os.Getenv("all_proxy") == "" {
			conn, err = tls.DialWithDialer(d, "tcp", u.Host, o.TLSConfig)
			break
		}
		var raw net.Conn
		if raw, err = proxy.FromEnvironment().Dial("tcp", u.Host); err != nil {
			break
		}
		tc := tls.Client(raw, o.TLSConfig)
		if err = tc.Handshake(); err != nil {
			raw.Close()
			break
		}
		conn = tc
	default:
		return nil, fmt.Errorf("broker %s: unsupported scheme %q", u.Redacted(), u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn, o.WriteTimeout), nil
}

// bufferedConn is a net.Conn whose reads go through a buffer and whose writes are
// coalesced: Write queues the bytes and returns, and one goroutine writes whatever has
// queued in a single write. paho writes each packet (a publish, an acknowledgement) with
// its own Write from one goroutine, so unqueued every packet is a write syscall and a TCP
// segment for the broker to take in; under load the queue sends dozens in one. Like the
// kernel's socket buffer, a Write that returned may still fail to arrive: the next Write
// returns the error, and paho's store sends unacknowledged publishes again after
// reconnecting.
//
// Write blocks while connWriteQueue bytes are unwritten (the broker is slow to read). The
// write timeout is the connection's own: each write of a batch must end within it, and a
// batch that does not fails every later Write, which paho takes for a lost connection.
// (paho's write deadlines, set around each Write, would bound only the queueing, so they
// are ignored.) Close sends what is queued first (paho's DISCONNECT, typically), and closes
// the connection once that is written or has failed; done is closed then.
type bufferedConn struct {
	net.Conn
	r            *bufio.Reader
	writeTimeout time.Duration // 0: none, and Close waits at most connCloseFlush
	done         chan struct{}
	closeOnce    sync.Once

	mu       sync.Mutex
	drained  *sync.Cond // signalled when a write ends
	queued   []byte     // bytes accepted, not yet handed to the writer
	spare    []byte     // the writer's previous batch, reused
	writing  bool       // the writer goroutine is running
	inflight int        // the size of the batch it is writing
	err      error      // the first write error; every later Write returns it
	closed   bool
}

// connWriteQueue bounds what a bufferedConn holds unwritten; connCloseFlush is how long
// Close waits for it to be written when the connection has no write timeout.
const (
	connWriteQueue = 64 << 10
	connCloseFlush = time.Second
)

func newBufferedConn(conn net.Conn, writeTimeout time.Duration) *bufferedConn {
	c := &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, connReadBuffer), writeTimeout: writeTimeout, done: make(chan struct{})}
	c.drained = sync.NewCond(&c.mu)
	return c
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// SetWriteDeadline does nothing: the connection's writes have their own timeout.
func (c *bufferedConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only (see SetWriteDeadline).
func (c *bufferedConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.queued)+c.inflight >= connWriteQueue {
		c.drained.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.queued = append(c.queued, p...)
	if !c.writing {
		c.writing = true
		go c.write()
	}
	return len(p), nil
}

// write sends what is queued until the queue is empty.
func (c *bufferedConn) write() {
	c.mu.Lock()
	for len(c.queued) > 0 && c.err == nil {
		batch := c.queued
		c.queued = c.spare[:0]
		c.inflight = len(batch)
		c.mu.Unlock()
		var err error
		if c.writeTimeout > 0 {
			err = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		}
		if err == nil {
			_, err = c.Conn.Write(batch)
		}
		c.mu.Lock()
		c.spare, c.inflight = batch, 0
		if err != nil {
			c.err = fmt.Errorf("write to broker: %w", err)
		}
		c.drained.Broadcast()
	}
	c.writing = false
	c.drained.Broadcast()
	c.mu.Unlock()
}

// Close sends what is queued, within the write timeout (or connCloseFlush without one),
// and closes the connection.
func (c *bufferedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.drained.Broadcast() // a Write waiting for room returns net.ErrClosed
	if c.writing {
		if c.writeTimeout <= 0 {
			t := time.AfterFunc(connCloseFlush, func() { c.Conn.Close() })
			defer t.Stop()
		}
		for c.writing {
			c.drained.Wait()
		}
	}
	c.mu.Unlock()
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.done) })
	return err
}

// orderedStore is paho's in-memory store of messages awaiting the broker, except that All
// lists keys in the order they were stored. After a reconnection paho sends the stored
// publishes again in All's order; its MemoryStore returns map order, which reorders the
// messages that were in flight when the connection dropped. Unlike MemoryStore it keeps
// working between Close and Open: a Close (after a failed connection attempt) loses nothing.
type orderedStore struct {
	mu   sync.Mutex
	next uint64
	m    map[string]stored
}

type stored struct {
	seq uint64
	p   packets.ControlPacket
}

func newOrderedStore() *orderedStore { return &orderedStore{m: map[string]stored{}} }

func (s *orderedStore) Open()  {}
func (s *orderedStore) Close() {}

func (s *orderedStore) Put(key string, p packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[key]; ok {
		s.m[key] = stored{old.seq, p}
		return
	}
	s.next++
	s.m[key] = stored{s.next, p}
}

func (s *orderedStore) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key].p
}

func (s *orderedStore) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(s.m[a].seq, s.m[b].seq) })
	return keys
}

func (s *orderedStore) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

func (s *orderedStore) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
}
