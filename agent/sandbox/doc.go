// Package sandbox runs WebAssembly modules as event handlers under the rules of
// shared/DESIGN.md: one wazero runtime per agent, each module compiled once, every event in
// a pristine instance, nothing granted that the manifest does not list, and per-instance
// limits that hold for every kind of guest code.
//
// # How a deadline reaches loop-free code
//
// wazero's WithCloseOnContextDone checks only at loop heads, so a call tree without loops
// (exponential recursion, say) runs on past any deadline. Before compiling, the module is
// rewritten (internal/rewrite) so that every function entry and every loop head tests an
// interrupt global that the host sets when the deadline passes; the start function is moved
// to an export so that it too runs under the deadline. The test costs one load and a branch
// and works on both wazero engines (the compiler on amd64/arm64, the interpreter on 32-bit
// ARM).
//
// # Memory
//
// Each instance gets its own memory allocator (experimental.WithMemoryAllocator) that refuses
// to grow past the module's limit, so memory.grow returns -1 as wasm specifies, and the event
// is reported as ErrMemoryLimit if it then fails. A module whose initial memory is above the
// limit is refused when it is loaded.
//
// # The compilation cache
//
// wazero's file cache only CRC-checks its entries, so whoever can write the directory could
// have native code of their choosing run. Here wazero writes only to a private working
// directory made fresh for each process (mode 0700); entries are copied to the persistent
// directory sealed with an HMAC under a per-device key kept outside it, and only entries
// whose seal verifies are copied back at start.
//
// Package sandbox does not fetch, verify signatures, or schedule events: see package agent.
package sandbox
