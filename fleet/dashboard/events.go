package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The event stream's topics. An event only says that something changed; pages fetch their
// live part again.
const (
	topicDevices  = "devices"  // a device reported
	topicRollouts = "rollouts" // a rollout document changed
	topicRates    = "rates"    // the chart has a new point
)

// Timing of the event stream.
const (
	// flushEvery coalesces changes: a listener hears of each topic at most this often.
	flushEvery = 500 * time.Millisecond
	// pollRollouts is how often the bucket's rollouts are read while someone listens.
	pollRollouts = time.Second
	// heartbeat keeps idle connections (and proxies) alive.
	heartbeat = 15 * time.Second
	// MaxListeners bounds the event streams open at once.
	MaxListeners = 256
)

// hub fans changes out to the open event streams. Its loop runs only while at least one
// stream is open: it flushes the topics marked dirty, polls the bucket's rollouts, and
// ticks the chart.
type hub struct {
	d *Dashboard

	mu      sync.Mutex
	subs    map[chan string]struct{}
	dirty   map[string]bool
	running bool
}

func newHub(d *Dashboard) *hub {
	return &hub{d: d, subs: map[chan string]struct{}{}, dirty: map[string]bool{}}
}

// mark notes that topic changed; listeners hear of it at the next flush.
func (h *hub) mark(topic string) {
	h.mu.Lock()
	if len(h.subs) > 0 {
		h.dirty[topic] = true
	}
	h.mu.Unlock()
}

// subscribe opens a listener, or returns nil when MaxListeners are open.
func (h *hub) subscribe() chan string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= MaxListeners {
		return nil
	}
	ch := make(chan string, 8)
	h.subs[ch] = struct{}{}
	if !h.running {
		h.running = true
		go h.loop()
	}
	return ch
}

func (h *hub) unsubscribe(ch chan string) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

// listeners is the number of open streams.
func (h *hub) listeners() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *hub) loop() {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var lastPoll time.Time
	lastBucket := bucketOf(h.d.now())
	for range t.C {
		now := h.d.now()
		if now.Sub(lastPoll) >= pollRollouts {
			lastPoll = now
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			changed, err := h.d.rollouts.refresh(ctx, 0)
			cancel()
			if err != nil {
				h.d.log.Warn().Err(err).Msg("read the rollouts")
			}
			if changed {
				h.mark(topicRollouts)
			}
		}
		if b := bucketOf(now); b != lastBucket {
			lastBucket = b
			h.mark(topicRates)
		}
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.running = false
			clear(h.dirty)
			h.mu.Unlock()
			return
		}
		for topic := range h.dirty {
			for ch := range h.subs {
				select {
				case ch <- topic:
				default: // a slow listener misses one; it catches up with the next
				}
			}
		}
		clear(h.dirty)
		h.mu.Unlock()
	}
}

// events is the Server-Sent Events stream: "event: TOPIC" whenever TOPIC changed, at most
// every flushEvery per topic, and a comment every heartbeat.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r.URL.RawQuery); err != nil {
		d.badRequest(w, r, err)
		return
	}
	ch := d.hub.subscribe()
	if ch == nil {
		d.fail(w, r, http.StatusServiceUnavailable, fmt.Sprintf("too many live listeners (%d); the pages still work, reload them by hand", MaxListeners))
		return
	}
	defer d.hub.unsubscribe(ch)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives a server's WriteTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n: wasmfleet dashboard\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case topic := <-ch:
			_, err = fmt.Fprintf(w, "event: %s\ndata: %d\n\n", topic, d.now().UnixMilli())
		case <-beat.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
