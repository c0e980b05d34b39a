package signing

import "errors"

// Kind is a class of refusal. Each *Error has one; errors.Is(err, signing.ErrReplay) tests
// for it. Its Error is the short name the CLI prints ("error: replay: ...").
type Kind struct{ name string }

func (k *Kind) Error() string { return k.name }

// The kinds of refusal.
var (
	// ErrMalformed: not valid JSON, PEM, base64 or DSSE, or fields of the wrong type.
	ErrMalformed = &Kind{"malformed"}
	// ErrPayloadType: the envelope, statement or predicate is of another type than expected.
	ErrPayloadType = &Kind{"payload-type"}
	// ErrInvalid: well-formed, but breaks a rule of the format (a bad manifest, a threshold
	// larger than the role, a key id that is not the key's).
	ErrInvalid = &Kind{"invalid"}
	// ErrBadSignature: a signature does not verify: the payload was changed after signing
	// (a tampered manifest), or the signature is corrupt.
	ErrBadSignature = &Kind{"bad-signature"}
	// ErrUnknownKey: signed by a key that does not hold the role.
	ErrUnknownKey = &Kind{"unknown-key"}
	// ErrThreshold: fewer distinct keys of the role signed than its threshold.
	ErrThreshold = &Kind{"threshold"}
	// ErrDuplicateKey: the threshold is only reached by counting one key more than once.
	ErrDuplicateKey = &Kind{"duplicate-key"}
	// ErrDigest: the module's SHA-256 (or its size, when shorter) is not the signed one: a
	// tampered module, or another module's file.
	ErrDigest = &Kind{"digest"}
	// ErrTooLarge: the module has more bytes than the signed size (endless data).
	ErrTooLarge = &Kind{"too-large"}
	// ErrMixAndMatch: a desired state names a release (name, version, digest, size) other
	// than the signed release it is paired with.
	ErrMixAndMatch = &Kind{"mix-and-match"}
	// ErrWrongTarget: a desired state for another group or device.
	ErrWrongTarget = &Kind{"wrong-target"}
	// ErrReplay: a desired state whose sequence is not above the last applied one, or a
	// trust file that is not newer than the one held.
	ErrReplay = &Kind{"replay"}
	// ErrExpired: a desired state or trust file past its expiry (a freeze attack).
	ErrExpired = &Kind{"expired"}
	// ErrRollback: a release below the installed version without the rollback flag.
	ErrRollback = &Kind{"rollback"}
	// ErrRotation: a trust file that skips a version, or lacks the old root threshold.
	ErrRotation = &Kind{"rotation"}
)

// Error is a refusal: Kind says which check failed, Msg says what was found, Err (when set)
// is the underlying cause.
type Error struct {
	Kind *Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	s := e.Kind.name + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, or nil.
func KindOf(err error) *Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return nil
}

func fail(k *Kind, msg string) *Error { return &Error{Kind: k, Msg: msg} }

func failWrap(k *Kind, msg string, err error) *Error { return &Error{Kind: k, Msg: msg, Err: err} }
