package signing

import (
	"context"
	"crypto"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// The fixtures below are shared by the table tests, the fuzz seeds and the benchmark.

// t0 is the fixed "now" of every test: no test reads the wall clock.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const manifestYAML = `name: threshold-alert
version: 1.2.0
abi: handler/v1
triggers:
  - mqtt: sensors/+/temperature
  - every: 30s
capabilities:
  publish: ["alerts/{device}/#"]
  kv: { max_bytes: 65536 }
  clock: true
config: { threshold: "30.5" }
limits: { memory: 4MiB, timeout: 50ms, max_publishes: 8, max_output: 16KiB, concurrency: 2 }
`

// fleet is a trust file with 1 root key, 3 release keys (threshold 2), 1 rollout key, and
// a few keys that hold no role.
type fleet struct {
	root, rollout, stranger signature.SignerVerifier
	release                 []signature.SignerVerifier
	trustEnv                []byte
	trust                   *Trust
	v                       *Verifier
	manifest                *modules.Manifest
}

func newSigner(t testing.TB, algo string) signature.SignerVerifier {
	t.Helper()
	priv, err := keys.Generate(algo)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pubOf(t testing.TB, s signature.Signer) crypto.PublicKey {
	t.Helper()
	p, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func idOf(t testing.TB, s signature.Signer) string {
	t.Helper()
	id, err := keys.ID(pubOf(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// trustFile builds a trust file of version v with the given role keys and thresholds.
func trustFile(t testing.TB, v uint64, expires time.Time, root []signature.Signer, rootT int, release []signature.Signer, releaseT int, rollout []signature.Signer, rolloutT int) *TrustFile {
	t.Helper()
	f := &TrustFile{Version: v, Expires: expires, Keys: map[string]TrustKey{}}
	add := func(ss []signature.Signer, thr int) Role {
		r := Role{Threshold: thr}
		for _, s := range ss {
			id, k, err := NewTrustKey(pubOf(t, s))
			if err != nil {
				t.Fatal(err)
			}
			f.Keys[id] = k
			r.KeyIDs = append(r.KeyIDs, id)
		}
		return r
	}
	f.Roles.Root = add(root, rootT)
	f.Roles.Release = add(release, releaseT)
	f.Roles.Rollout = add(rollout, rolloutT)
	return f
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	fl := &fleet{
		root:     newSigner(t, keys.ECDSAP256),
		rollout:  newSigner(t, keys.ECDSAP256),
		stranger: newSigner(t, keys.ECDSAP256),
		release:  []signature.SignerVerifier{newSigner(t, keys.ECDSAP256), newSigner(t, keys.Ed25519), newSigner(t, keys.ECDSAP256)},
	}
	f := trustFile(t, 1, t0.Add(365*24*time.Hour),
		[]signature.Signer{fl.root}, 1,
		[]signature.Signer{fl.release[0], fl.release[1], fl.release[2]}, 2,
		[]signature.Signer{fl.rollout}, 1)
	var err error
	fl.trustEnv, err = SignTrust(context.Background(), f, fl.root)
	if err != nil {
		t.Fatal(err)
	}
	fl.trust, err = ParseTrust(fl.trustEnv)
	if err != nil {
		t.Fatal(err)
	}
	fl.v = &Verifier{Trust: fl.trust, Now: func() time.Time { return t0 }}
	fl.manifest, err = modules.Parse([]byte(manifestYAML))
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

// wasm is a stand-in module: the verifier never looks inside.
func wasm(n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b, "\x00asm\x01\x00\x00\x00")
	for i := 8; i < n; i++ {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

func (fl *fleet) signRelease(t testing.TB, m *modules.Manifest, mod []byte, signers ...signature.Signer) []byte {
	t.Helper()
	env, err := SignRelease(context.Background(), m, bytesReader(mod), signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (fl *fleet) desired(mod []byte, seq uint64) *Desired {
	digest, size, _ := HashModule(bytesReader(mod))
	return &Desired{
		Target:   Target{Group: "greenhouse"},
		Sequence: seq,
		Expires:  t0.Add(24 * time.Hour),
		Modules: []ModuleTarget{{
			Release:     ReleaseRef{Name: fl.manifest.Name, Version: fl.manifest.Version, SHA256: digest, Size: size},
			Rollout:     "r-1",
			WavePercent: 25,
		}},
	}
}

func (fl *fleet) signDesired(t testing.TB, d *Desired, signers ...signature.Signer) []byte {
	t.Helper()
	env, err := SignDesired(context.Background(), d, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
