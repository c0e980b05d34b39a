// Package publish puts signed releases into the fleet's S3-compatible bucket, in the object
// layout of protocol/objects, and reads back what is there.
//
// Publish verifies before it writes: the release against a trust file (the release role's
// threshold) and the module against the release (digest and size), so a bucket only ever
// receives what devices would accept. It writes the module first and the release envelope
// second, because a device that sees a release fetches its module next. A published
// version is never replaced: each object is created with a conditional write
// (If-None-Match: *), publishing the same release again changes nothing, and a different
// release under an existing version is refused with ErrConflict.
//
// The package holds no credentials of its own and never prints: callers pass a Config and
// a zerolog.Logger. It does not sign (package signing) and does not roll anything out.
package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/signing"
)

// ErrConflict: the bucket already holds something else under the release's version (another
// module, another manifest, or an object that is not a valid release). Match it with
// errors.Is; the *ConflictError says what was found.
var ErrConflict = errors.New("conflict")

// ConflictError is a refusal to publish over an existing version.
type ConflictError struct {
	Key string // the object that is in the way
	Msg string // what it holds, and what to do
}

func (e *ConflictError) Error() string { return e.Key + ": " + e.Msg }

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Content types of the objects written.
const (
	ModuleContentType   = "application/wasm"
	ReleaseContentType  = "application/json"
	maxPublishAttempts  = 4
	conflictAdviceShort = "a published version is never replaced: sign this one as a new version"
)

// Options adjusts one Publish.
type Options struct {
	// Progress, when set, is read as the module's bytes go out (minio-go calls its Read
	// with a buffer as long as each chunk sent), for a progress bar. A retried request
	// sends its bytes again.
	Progress io.Reader
}

// Result says what Publish did.
type Result struct {
	// Release is the verified release.
	Release *signing.Release
	// ModuleKey and ReleaseKey are the objects of the release.
	ModuleKey, ReleaseKey string
	// ModuleUploaded and ReleaseUploaded say what this call wrote. Both false means the
	// release was already published: nothing was written.
	ModuleUploaded, ReleaseUploaded bool
	// OtherSignatures: the bucket already held this release (the same signed statement)
	// with another set of signatures, for instance before a countersignature. It was kept.
	OtherSignatures bool
}

// AlreadyPublished reports whether the bucket held the whole release before this call.
func (r *Result) AlreadyPublished() bool { return !r.ModuleUploaded && !r.ReleaseUploaded }

// Publish verifies envelope (a DSSE release) with v and module against it, then uploads
// module.wasm and release.dsse.json to releases/{name}/{version}/, each only if absent.
//
// A refusal by the verifier is returned as it is (a *signing.Error: match its Kind), before
// any request. When the version already holds the same release, nothing is written; when it
// holds a different one, the error is a *ConflictError and nothing is written either. When
// an earlier publish stopped between the module and the release, the module is checked
// (hashed) and the release written. Publishers racing on one version are ordered by the
// store's conditional writes: every one of them sees either its own objects or the
// winner's, and only a publisher of the very same release reports success.
func (b *Bucket) Publish(ctx context.Context, v *signing.Verifier, envelope, module []byte, opts Options) (*Result, error) {
	rel, err := v.VerifyReleaseModule(envelope, bytes.NewReader(module))
	if err != nil {
		return nil, err
	}
	mk, err := objects.ModuleKey(rel.Manifest.Name, rel.Manifest.Version)
	if err != nil {
		return nil, err
	}
	rk, err := objects.ReleaseKey(rel.Manifest.Name, rel.Manifest.Version)
	if err != nil {
		return nil, err
	}
	res := &Result{Release: rel, ModuleKey: mk, ReleaseKey: rk}
	log := b.log.With().Str("release", rel.Manifest.Name+"@"+rel.Manifest.Version).Logger()

	// Each round looks at what the bucket holds and writes what is missing. A conditional
	// write that finds its key taken means another publisher got there first: look again.
	for range maxPublishAttempts {
		stored, _, found, err := b.get(ctx, rk, signing.MaxEnvelopeSize)
		if err != nil {
			return nil, err
		}
		if found {
			other, err := sameRelease(v, rk, stored, envelope, rel)
			if err != nil {
				return nil, err
			}
			res.OtherSignatures = other
		}
		have, err := b.holdsModule(ctx, mk, rel)
		if err != nil {
			return nil, err
		}
		if !have {
			if found {
				log.Warn().Str("key", mk).Msg("the release is published but its module is missing; uploading the module")
			}
			if _, err := b.putIfAbsent(ctx, mk, module, ModuleContentType, opts.Progress); errors.Is(err, errExists) {
				log.Info().Str("key", mk).Msg("module written meanwhile by someone else; checking it")
				continue
			} else if err != nil {
				return nil, err
			}
			res.ModuleUploaded = true
			log.Debug().Str("key", mk).Msg("module uploaded")
		}
		if found {
			return res, nil
		}
		if _, err := b.putIfAbsent(ctx, rk, envelope, ReleaseContentType, nil); errors.Is(err, errExists) {
			log.Info().Str("key", rk).Msg("release written meanwhile by someone else; checking it")
			continue
		} else if err != nil {
			return nil, err
		}
		res.ReleaseUploaded = true
		log.Debug().Str("key", rk).Msg("release uploaded")
		return res, nil
	}
	return nil, fmt.Errorf("publish %s@%s: the objects changed under every one of %d attempts; try again",
		rel.Manifest.Name, rel.Manifest.Version, maxPublishAttempts)
}

// sameRelease checks that stored, the envelope the bucket holds at key, is the release being
// published: the same signed statement, with signatures that verify. other reports that its
// signatures differ from envelope's.
func sameRelease(v *signing.Verifier, key string, stored, envelope []byte, rel *signing.Release) (other bool, err error) {
	sr, se, err := signing.InspectRelease(stored)
	if err != nil {
		return false, &ConflictError{key, fmt.Sprintf("holds an object that is not a release envelope (%v); remove it by hand if it is garbage", err)}
	}
	if sr.SHA256 != rel.SHA256 || sr.Size != rel.Size {
		return false, &ConflictError{key, fmt.Sprintf("%s %s is already published for another module (sha256 %s, %d bytes; this release: sha256 %s, %d bytes); %s",
			rel.Manifest.Name, rel.Manifest.Version, short(sr.SHA256), sr.Size, short(rel.SHA256), rel.Size, conflictAdviceShort)}
	}
	ne, err := signing.ParseEnvelope(envelope)
	if err != nil { // verified above, so this does not happen
		return false, err
	}
	if !bytes.Equal(se.Payload, ne.Payload) {
		return false, &ConflictError{key, fmt.Sprintf("%s %s is already published for this module with another manifest (capabilities, limits, triggers or config differ); %s",
			rel.Manifest.Name, rel.Manifest.Version, conflictAdviceShort)}
	}
	if _, err := v.VerifyRelease(stored); err != nil {
		return false, &ConflictError{key, fmt.Sprintf("holds this release with signatures that do not verify (%v); devices refuse it: remove it by hand and publish again", err)}
	}
	return !bytes.Equal(bytes.TrimSpace(stored), bytes.TrimSpace(envelope)), nil
}

// holdsModule reports whether key holds the release's module, checked by size and then by
// SHA-256 over the stored bytes. Another object there is a *ConflictError.
func (b *Bucket) holdsModule(ctx context.Context, key string, rel *signing.Release) (bool, error) {
	info, found, err := b.stat(ctx, key)
	if err != nil || !found {
		return false, err
	}
	if info.Size != int64(rel.Size) {
		return false, &ConflictError{key, fmt.Sprintf("holds a module of %d bytes, not the %d bytes this release signs; %s", info.Size, rel.Size, conflictAdviceShort)}
	}
	obj, err := b.client.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	if err := rel.VerifyModule(obj); err != nil {
		if signing.KindOf(err) == nil { // a read error, not a mismatch
			return false, fmt.Errorf("get %s: %w", key, err)
		}
		return false, &ConflictError{key, fmt.Sprintf("holds another module of the same size (%v); %s", err, conflictAdviceShort)}
	}
	return true, nil
}

// ErrNoTrust: the bucket holds no trust file.
var ErrNoTrust = errors.New("the bucket holds no " + objects.TrustKey)

// Trust reads the bucket's trust file and checks its root signatures (signing.ParseTrust).
// It returns ErrNoTrust when there is none.
func (b *Bucket) Trust(ctx context.Context) (*signing.Trust, error) {
	data, _, found, err := b.get(ctx, objects.TrustKey, signing.MaxEnvelopeSize)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNoTrust
	}
	t, err := signing.ParseTrust(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", objects.TrustKey, err)
	}
	return t, nil
}

// TrustResult says what PublishTrust did.
type TrustResult struct {
	// Uploaded: the bucket held no trust file and now holds t.
	Uploaded bool
	// Same: the bucket already held t, byte for byte.
	Same bool
	// StoredVersion is the version of the trust file the bucket held (0: none, or one that
	// does not decode).
	StoredVersion uint64
}

// PublishTrust uploads t's envelope as trust/root.json when the bucket holds no trust file.
// An existing one is never replaced here: rotating the bucket's trust file is a separate,
// deliberate step.
func (b *Bucket) PublishTrust(ctx context.Context, t *signing.Trust) (TrustResult, error) {
	env := t.Envelope()
	for range maxPublishAttempts {
		stored, _, found, err := b.get(ctx, objects.TrustKey, signing.MaxEnvelopeSize)
		if err != nil {
			return TrustResult{}, err
		}
		if found {
			r := TrustResult{Same: bytes.Equal(bytes.TrimSpace(stored), bytes.TrimSpace(env))}
			if st, _, err := signing.InspectTrust(stored); err == nil {
				r.StoredVersion = st.Version()
			}
			return r, nil
		}
		if _, err := b.putIfAbsent(ctx, objects.TrustKey, env, ReleaseContentType, nil); errors.Is(err, errExists) {
			continue
		} else if err != nil {
			return TrustResult{}, err
		}
		return TrustResult{Uploaded: true}, nil
	}
	return TrustResult{}, fmt.Errorf("publish %s: it changed under every one of %d attempts", objects.TrustKey, maxPublishAttempts)
}

// short is the first 12 hex digits of a digest.
func short(hex string) string {
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}
