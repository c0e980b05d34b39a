//go:build wasip1

package wasmfleet

import (
	"time"
	"unsafe"
)

// Level is a log level.
type Level int32

// Log levels, as in ABI.md.
const (
	Debug Level = 0
	Info  Level = 1
	Warn  Level = 2
	Error Level = 3
)

// maxValue bounds what the getters will allocate for one value (kv values, config, ids).
const maxValue = 16 << 20

// fetch calls a host getter with a 256-byte buffer and again with the exact size when the
// value is longer. ok is false when the host returned -1 (absent).
func fetch(get func(buf unsafe.Pointer, capacity uint32) int32) (v []byte, ok bool) {
	buf := make([]byte, 256)
	n := get(unsafe.Pointer(&buf[0]), uint32(len(buf)))
	if n < 0 {
		return nil, false
	}
	if int(n) > len(buf) && n <= maxValue {
		buf = make([]byte, n)
		n = get(unsafe.Pointer(&buf[0]), uint32(len(buf)))
		if n < 0 {
			return nil, false
		}
	}
	return buf[:min(int(n), len(buf))], true
}

// Topic is the MQTT topic of the current event ("" for an interval trigger).
func Topic() string {
	v, _ := fetch(hostEventTopic)
	return string(v)
}

// DeviceID is this device's id.
func DeviceID() string {
	v, _ := fetch(hostDeviceID)
	return string(v)
}

// Config returns the manifest's config value for key.
func Config(key string) (string, bool) {
	k, kn := str(key)
	v, ok := fetch(func(buf unsafe.Pointer, capacity uint32) int32 { return hostConfigGet(k, kn, buf, capacity) })
	return string(v), ok
}

// Publish sends payload to topic. Needs the publish capability with a pattern matching topic.
func Publish(topic string, payload []byte) {
	t, tn := str(topic)
	p, pn := bytes(payload)
	hostPublish(t, tn, p, pn)
}

// Log writes a line to the agent's log (dropped without the log capability).
func Log(level Level, msg string) {
	m, mn := str(msg)
	hostLog(int32(level), m, mn)
}

// KVGet returns the value stored under key. Needs the kv capability.
func KVGet(key string) ([]byte, bool) {
	k, kn := str(key)
	return fetch(func(buf unsafe.Pointer, capacity uint32) int32 { return hostKVGet(k, kn, buf, capacity) })
}

// KVSet stores value under key (committed only if the event succeeds). Needs kv.
func KVSet(key string, value []byte) {
	k, kn := str(key)
	v, vn := bytes(value)
	hostKVSet(k, kn, v, vn)
}

// KVDelete removes key. Needs kv.
func KVDelete(key string) {
	k, kn := str(key)
	hostKVDelete(k, kn)
}

// Now is the wall-clock time. Needs the clock capability.
func Now() time.Time { return time.Unix(0, hostClockNow()) }

// Random fills b with cryptographically secure random bytes. Needs the random capability.
func Random(b []byte) {
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		p, pn := bytes(b[:n])
		hostRandomFill(p, pn)
		b = b[n:]
	}
}
