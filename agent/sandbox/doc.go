// Package sandbox runs WebAssembly modules as event handlers under the rules of
// shared/DESIGN.md: one wazero runtime per agent, each module compiled once, every event in
// a pristine instance, nothing granted that the manifest does not list, and per-instance
// limits that hold for every kind of guest code.
//
// # How a deadline reaches every guest
//
// wazero's WithCloseOnContextDone checks only at loop heads, so a call tree without loops
// (exponential recursion, say) runs on past any deadline; and compiled guest code cannot be
// preempted by the Go scheduler, so a guest that never calls into Go holds its thread
// against every stop-the-world garbage collection, which stalls the whole agent, the timer
// meant to stop it included. Before compiling, the module is therefore rewritten
// (internal/rewrite): every function entry and loop head counts down a fuel global and, when
// it runs out, calls the host's yield function. Yield runs on the event's own goroutine; it
// ends the call when the deadline has passed, the caller's context has ended or a host
// function recorded a violation, and otherwise refills the fuel, sized so that the guest
// comes back every 0.1 to 1 ms whatever the engine and machine. No other goroutine ever
// touches a running guest. The start function is moved to an export so that it too runs
// under the deadline, and a stack budget ends deep recursion as ErrStackOverflow long before
// wazero's own 400 MB ceiling. All of it works the same on both wazero engines (the compiler
// on amd64/arm64, the interpreter on 32-bit ARM).
//
// # Pristine instances at warm-call speed
//
// An instance is not made per event. Right after initialisation its memory, mutable globals
// (exported for the host by the rewrite), fake clocks and deterministic random stream are
// saved (instance.go), and before each later event they are put back: a memory copy instead
// of an instantiation. What the API cannot put back (tables, dropped segments, WASI's file
// descriptors) the rewrite flags in a dirty global before it changes; such an instance, one
// whose memory grew and one whose event was stopped are closed after their event. Idle
// instances are kept per module, up to Limits.Concurrency. Commands, modules granted
// randomness and modules with a mutable v128 global still get a new instance per event.
// docs/sandbox.md ("Pristine instances") says why this design and what it costs.
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
// whose seal verifies are copied back at start. A sealed index says which module (the
// sha256 of its wasm) each entry was compiled from, so that Runtime.RetainCompiled can drop
// the code of versions the device no longer keeps.
//
// Package sandbox does not fetch, verify signatures, or schedule events: see package agent.
package sandbox
