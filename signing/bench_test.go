package signing

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
)

// BenchmarkVerify measures what an agent spends to trust a release of a 1 MiB module with
// a 2-of-3 release threshold (ECDSA P-256), beside two peers measured in the same run: the
// SHA-256 of the module alone (the floor), and sigstore's own threshold verifier
// (dsse.WrapMultiVerifierWithOpts) on the same envelope plus the same hash.
// Figures: docs/BENCHMARKS.md, "Verification".
func BenchmarkVerify(b *testing.B) {
	fl := newFleet(b)
	mod := wasm(1<<20, 3)
	env := fl.signRelease(b, fl.manifest, mod, fl.release[0], fl.release[2]) // both ECDSA P-256

	b.Run("release-1MiB-2of3", func(b *testing.B) {
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			if _, err := fl.v.VerifyReleaseModule(env, bytes.NewReader(mod)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("envelope-only-2of3", func(b *testing.B) {
		for b.Loop() {
			if _, err := fl.v.VerifyRelease(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-sha256-1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			sha256.Sum256(mod)
		}
	})
	b.Run("peer-sigstore-WrapMultiVerifier-1MiB-2of3", func(b *testing.B) {
		// sigstore's verifier matches keyid hints against its own ids, so give it the
		// envelope without hints (as cosign writes them).
		plain := reenvelopeB(b, env)
		vs := []signature.Verifier{fl.release[0], fl.release[1], fl.release[2]}
		b.SetBytes(int64(len(mod)))
		for b.Loop() {
			v := sigdsse.WrapMultiVerifierWithOpts(ReleasePayloadType, 2, vs)
			if err := v.VerifySignature(bytes.NewReader(plain), nil); err != nil {
				b.Fatal(err)
			}
			sha256.Sum256(mod)
		}
	})
}

func reenvelopeB(b *testing.B, env []byte) []byte {
	e, err := ParseEnvelope(env)
	if err != nil {
		b.Fatal(err)
	}
	for i := range e.Signatures {
		e.Signatures[i].KeyID = ""
	}
	out, err := e.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return out
}
