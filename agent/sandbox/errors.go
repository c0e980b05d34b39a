package sandbox

import (
	"errors"
)

// Errors that end an event or refuse a module. Every error from Load and Handle wraps exactly
// one of them; Kind names it.
var (
	ErrTimeout        = errors.New("timeout")
	ErrMemoryLimit    = errors.New("memory-limit")
	ErrStackOverflow  = errors.New("stack-overflow")
	ErrTrap           = errors.New("trap")
	ErrHandler        = errors.New("handler-failed")
	ErrForbiddenTopic = errors.New("forbidden-topic")
	ErrPublishLimit   = errors.New("publish-limit")
	ErrOutputLimit    = errors.New("output-limit")
	ErrQuota          = errors.New("kv-quota")
	ErrCapability     = errors.New("capability-denied")
	ErrBadPointer     = errors.New("bad-pointer")
	ErrUnknownImport  = errors.New("unknown-import")
	ErrModuleTooLarge = errors.New("module-too-large")
	ErrInvalidModule  = errors.New("invalid-module")
	ErrPolicy         = errors.New("policy")
	ErrClosed         = errors.New("closed")
	ErrCancelled      = errors.New("cancelled") // the caller's context ended the event
)

var allKinds = []error{ErrTimeout, ErrMemoryLimit, ErrStackOverflow, ErrTrap, ErrHandler,
	ErrForbiddenTopic, ErrPublishLimit, ErrOutputLimit, ErrQuota, ErrCapability, ErrBadPointer,
	ErrUnknownImport, ErrModuleTooLarge, ErrInvalidModule, ErrPolicy, ErrClosed, ErrCancelled}

// Kind returns the short name of the sandbox error err wraps ("timeout", "trap", ...), or
// "error" for anything else.
func Kind(err error) string {
	for _, k := range allKinds {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return "error"
}

// violation is what a host function panics with to end an event; wazero hands it back as
// the call's error.
type violation struct{ err error }

func (v violation) Error() string { return v.err.Error() }
func (v violation) Unwrap() error { return v.err }
