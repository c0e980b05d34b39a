//go:build wasip1

package main

import wasmfleet "github.com/wasmfleet/wasmfleet/modules/sdk/go"

// kvKey holds the last readings.
const kvKey = "window"

func init() { wasmfleet.Handle(handle) }

func handle(payload []byte) error {
	v, err := reading(payload)
	if err != nil {
		return err
	}
	n := defaultWindow
	if s, ok := wasmfleet.Config("window"); ok {
		n = window(s)
	}
	stored, _ := wasmfleet.KVGet(kvKey)
	vs := push(decode(stored), v, n)
	wasmfleet.KVSet(kvKey, encode(vs))
	device := wasmfleet.DeviceID()
	msg, err := message(device, vs)
	if err != nil {
		return err
	}
	wasmfleet.Publish("averages/"+device, msg)
	return nil
}

// main never runs in a reactor (-buildmode=c-shared); the Go toolchain still wants one.
func main() {}
