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
func openBrokerConn(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
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
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, connReadBuffer)}, nil
}

// bufferedConn is a net.Conn whose reads go through a buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
