//go:build wasip1

package wasmfleet

import "unsafe"

// Handler handles one event's payload. A non-nil error is logged and makes the event a
// handler failure (its kv writes are discarded).
type Handler func(payload []byte) error

var (
	handler Handler
	// payload holds the buffer wasmfleet_alloc handed out, so the garbage collector keeps it.
	payload []byte
)

// Handle registers h as the module's handler. Call it from an init function.
func Handle(h Handler) { handler = h }

// Results of wasmfleet_handle other than 0.
const (
	resultError      = 1 // the handler returned an error
	resultPanic      = 2 // the handler panicked
	resultNoHandler  = 3 // Handle was never called
	resultBadPayload = 4 // the payload pointer is not the one wasmfleet_alloc returned
)

//go:wasmexport wasmfleet_alloc
func wasmfleetAlloc(size uint32) uint32 {
	payload = make([]byte, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(&payload[0])))
}

//go:wasmexport wasmfleet_handle
func wasmfleetHandle(ptr, n uint32) (result int32) {
	var p []byte
	if n > 0 {
		// The host places the payload where wasmfleet_alloc said; anything else is refused
		// rather than turning an arbitrary address into a slice.
		if len(payload) < int(n) || uint32(uintptr(unsafe.Pointer(&payload[0]))) != ptr {
			Log(Error, "wasmfleet: payload is not where wasmfleet_alloc put it")
			return resultBadPayload
		}
		p = payload[:n]
	}
	if handler == nil {
		Log(Error, "wasmfleet: no handler registered (call wasmfleet.Handle from an init function)")
		return resultNoHandler
	}
	defer func() {
		if r := recover(); r != nil {
			msg := "?"
			switch r := r.(type) {
			case error:
				msg = r.Error()
			case string:
				msg = r
			}
			Log(Error, "wasmfleet: handler panicked: "+msg)
			result = resultPanic
		}
	}()
	if err := handler(p); err != nil {
		Log(Error, err.Error())
		return resultError
	}
	return 0
}
