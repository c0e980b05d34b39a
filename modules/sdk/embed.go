// Package sdk holds the guest SDKs' sources as data: the C header (c/wasmfleet.h) and the Go
// package (go/, import path github.com/wasmfleet/wasmfleet/modules/sdk/go), embedded so that
// `wasmfleet new` can copy them into a handler directory outside this repository. The SDKs
// themselves are documented in those directories; this package has no code.
package sdk

import "embed"

// Files are the SDK sources, at their paths below modules/sdk.
//
//go:embed c/wasmfleet.h go/*.go
var Files embed.FS
