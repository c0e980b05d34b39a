package devenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// Limits of the retained-messages file.
const (
	maxRetainedFile     = 64 << 20
	maxRetainedMessages = 100_000
	// maxRetainedPayload bounds the payload bytes kept, so that the file (payloads in
	// base64: 4/3 as long) stays under maxRetainedFile and the next start can read it.
	maxRetainedPayload = 40 << 20
	maxTopicLen        = 65535
	retainedVersion    = 1
	retainedFlushDelay = 200 * time.Millisecond
)

// retainedMsg is one retained message as the file keeps it.
type retainedMsg struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"` // base64 in the file
	QoS     byte   `json:"qos"`
	Created int64  `json:"created,omitempty"` // unix seconds
}

type retainedDoc struct {
	Version  int           `json:"version"`
	Messages []retainedMsg `json:"messages"`
}

// parseRetained reads the retained-messages file: {"version":1,"messages":[...]}, strict
// (unknown fields are errors), each message with a topic name that a client could have
// published to (non-empty, no wildcards or NUL, valid UTF-8, at most 65535 bytes), QoS 0 to
// 2, a non-empty payload (an empty one deletes a retained message, so it is never kept),
// and no topic twice.
func parseRetained(data []byte) ([]retainedMsg, error) {
	if len(data) > maxRetainedFile {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", len(data), maxRetainedFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc retainedDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a retained-messages file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a retained-messages file: data after the JSON object")
	}
	if doc.Version != retainedVersion {
		return nil, fmt.Errorf("version %d; this program reads version %d", doc.Version, retainedVersion)
	}
	if len(doc.Messages) > maxRetainedMessages {
		return nil, fmt.Errorf("%d messages, more than the %d allowed", len(doc.Messages), maxRetainedMessages)
	}
	seen := make(map[string]bool, len(doc.Messages))
	for i, m := range doc.Messages {
		if err := checkTopicName(m.Topic); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		switch {
		case m.QoS > 2:
			return nil, fmt.Errorf("message %d (%s): qos %d", i, truncate(m.Topic, 60), m.QoS)
		case len(m.Payload) == 0:
			return nil, fmt.Errorf("message %d (%s): empty payload", i, truncate(m.Topic, 60))
		case seen[m.Topic]:
			return nil, fmt.Errorf("message %d: topic %s twice", i, truncate(m.Topic, 60))
		}
		seen[m.Topic] = true
	}
	return doc.Messages, nil
}

// checkTopicName checks a topic name one may publish to.
func checkTopicName(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case len(t) > maxTopicLen:
		return fmt.Errorf("topic of %d bytes", len(t))
	case !utf8.ValidString(t):
		return fmt.Errorf("topic %q is not UTF-8", truncate(t, 60))
	case strings.ContainsAny(t, "+#\x00"):
		return fmt.Errorf("topic %q holds a wildcard or NUL", truncate(t, 60))
	}
	return nil
}

// marshalRetained writes the file, messages sorted by topic.
func marshalRetained(msgs []retainedMsg) ([]byte, error) {
	msgs = slices.Clone(msgs)
	slices.SortFunc(msgs, func(a, b retainedMsg) int { return strings.Compare(a.Topic, b.Topic) })
	if msgs == nil {
		msgs = []retainedMsg{}
	}
	return json.MarshalIndent(retainedDoc{Version: retainedVersion, Messages: msgs}, "", " ")
}

// retainedHook is a mochi-mqtt hook that keeps the broker's retained messages (the groups'
// desired states, the devices' statuses) in a file, so that a restarted `wasmfleet dev`
// has them back, as a Mosquitto with persistence would. Sessions and queued messages are
// not kept: agents subscribe again when they connect. Writes are atomic (temp file, fsync,
// rename) and gathered: at most one every retainedFlushDelay, and a last one when the
// broker stops.
type retainedHook struct {
	mqtt.HookBase
	path string
	log  zerolog.Logger

	mu    sync.Mutex
	msgs  map[string]retainedMsg
	bytes int  // payload bytes in msgs
	full  bool // a message was not kept for want of room (logged once)
	// maxMessages and maxPayload bound what is kept: maxRetainedMessages and
	// maxRetainedPayload (tests make them smaller).
	maxMessages, maxPayload int
	dirty                   bool
	stopped                 bool
	writes                  int
	kick                    chan struct{}
	done                    chan struct{}
}

// openRetained reads the file at path (none: no retained messages) and starts the writer.
func openRetained(path string, log zerolog.Logger) (*retainedHook, error) {
	h := &retainedHook{path: path, log: log, msgs: map[string]retainedMsg{},
		maxMessages: maxRetainedMessages, maxPayload: maxRetainedPayload,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("retained messages: %w", err)
	default:
		msgs, err := parseRetained(b)
		if err != nil {
			return nil, fmt.Errorf("retained messages in %s: %w (remove the file to start the broker without them)", path, err)
		}
		for _, m := range msgs {
			h.msgs[m.Topic] = m
			h.bytes += len(m.Payload)
		}
	}
	go h.writer()
	return h, nil
}

func (h *retainedHook) ID() string { return "wasmfleet-retained-file" }

func (h *retainedHook) Provides(b byte) bool {
	return b == mqtt.OnRetainMessage || b == mqtt.StoredRetainedMessages || b == mqtt.OnRetainedExpired
}

// StoredRetainedMessages gives the broker the messages read from the file.
func (h *retainedHook) StoredRetainedMessages() ([]storage.Message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]storage.Message, 0, len(h.msgs))
	for _, m := range h.msgs {
		out = append(out, storage.Message{
			TopicName:   m.Topic,
			Payload:     slices.Clone(m.Payload),
			Created:     m.Created,
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: m.QoS},
		})
	}
	return out, nil
}

// OnRetainMessage records a retained message (r 1) or its removal (r -1).
func (h *retainedHook) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	old, had := h.msgs[pk.TopicName]
	switch r {
	case 1:
		n, size := len(h.msgs), h.bytes-len(old.Payload)+len(pk.Payload)
		if !had {
			n++
		}
		if n > h.maxMessages || size > h.maxPayload {
			// The broker still holds it; only the next run will not have it.
			if !h.full {
				h.full = true
				h.log.Warn().Str("topic", truncate(pk.TopicName, 100)).Int("messages", len(h.msgs)).Int("bytes", h.bytes).
					Msg("too many retained messages to keep for the next run; this and further ones are not kept")
			}
			if had { // what the file would keep is out of date: drop it
				delete(h.msgs, pk.TopicName)
				h.bytes -= len(old.Payload)
				h.markDirty()
			}
			return
		}
		h.msgs[pk.TopicName] = retainedMsg{Topic: pk.TopicName, Payload: slices.Clone(pk.Payload), QoS: pk.FixedHeader.Qos, Created: pk.Created}
		h.bytes = size
	case -1:
		if !had {
			return
		}
		delete(h.msgs, pk.TopicName)
		h.bytes -= len(old.Payload)
	default:
		return
	}
	h.markDirty()
}

// OnRetainedExpired forgets a message the broker let expire.
func (h *retainedHook) OnRetainedExpired(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.msgs[topic]; ok && !h.stopped {
		delete(h.msgs, topic)
		h.bytes -= len(old.Payload)
		h.markDirty()
	}
}

func (h *retainedHook) markDirty() {
	h.dirty = true
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// writer writes the file after changes, at most once every retainedFlushDelay.
func (h *retainedHook) writer() {
	defer close(h.done)
	for range h.kick {
		time.Sleep(retainedFlushDelay) // gather the changes of a burst into one write
		if err := h.flush(); err != nil {
			h.log.Error().Err(err).Str("file", h.path).Msg("save retained messages")
		}
		h.mu.Lock()
		stopped := h.stopped
		h.mu.Unlock()
		if stopped {
			return
		}
	}
}

// flush writes the messages when they changed since the last write.
func (h *retainedHook) flush() error {
	h.mu.Lock()
	if !h.dirty {
		h.mu.Unlock()
		return nil
	}
	msgs := make([]retainedMsg, 0, len(h.msgs))
	for _, m := range h.msgs {
		msgs = append(msgs, m)
	}
	h.dirty = false
	h.writes++
	h.mu.Unlock()
	b, err := marshalRetained(msgs)
	if err != nil {
		return err
	}
	return atomicfile.Write(h.path, b, 0o600)
}

// Stop is called by the broker when it closes: the last changes are written.
func (h *retainedHook) Stop() error {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil
	}
	h.stopped = true
	h.mu.Unlock()
	close(h.kick)
	<-h.done
	return h.flush()
}
