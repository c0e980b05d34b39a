// Package wasmfleet is the Go guest SDK for wasmfleet handler/v1 modules (see modules/ABI.md):
// typed wrappers for every wasmfleet host function, and the wasmfleet_alloc and
// wasmfleet_handle exports, so a handler is one function.
//
// It only builds for GOOS=wasip1 GOARCH=wasm; on other platforms the package is this comment
// and nothing else.
//
// # Writing a handler
//
// Register the handler from an init function: a module built with -buildmode=c-shared is a
// WASI reactor, whose _initialize export runs package initialisation but never main.
//
//	package main
//
//	import wasmfleet "github.com/wasmfleet/wasmfleet/modules/sdk/go"
//
//	func init() {
//		wasmfleet.Handle(func(payload []byte) error {
//			wasmfleet.Publish("echo/"+wasmfleet.DeviceID(), payload)
//			return nil // an error is logged and makes the event a handler failure
//		})
//	}
//
//	func main() {}
//
// # Building
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -buildmode=c-shared \
//		-ldflags='-s -w -buildid=' -o handler.wasm .
//
// The Go runtime needs more memory than a C handler: give the manifest a memory limit of at
// least 32MiB, and a timeout that allows a few milliseconds to start each fresh instance.
//
// # Errors
//
// Calls the manifest does not allow (publishing outside the publish capability, kv without
// the kv capability, too many publishes, ...) end the event in the host; they do not return.
package wasmfleet
