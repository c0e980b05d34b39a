package signing_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func newKey() signature.SignerVerifier {
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		panic(err)
	}
	sv, err := keys.Signer(priv)
	if err != nil {
		panic(err)
	}
	return sv
}

func role(f *signing.TrustFile, threshold int, ss ...signature.SignerVerifier) signing.Role {
	r := signing.Role{Threshold: threshold}
	for _, s := range ss {
		pub, _ := s.PublicKey()
		id, k, err := signing.NewTrustKey(pub)
		if err != nil {
			panic(err)
		}
		f.Keys[id] = k
		r.KeyIDs = append(r.KeyIDs, id)
	}
	return r
}

// The whole path: the fleet signs a trust file, a release and a desired state; the agent
// checks each before it trusts anything, in this order.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	// Fleet side (keys from `wasmfleet keygen` or a KMS in real life).
	root, rel1, rel2, rollout := newKey(), newKey(), newKey(), newKey()
	f := &signing.TrustFile{Version: 1, Expires: now.AddDate(1, 0, 0), Keys: map[string]signing.TrustKey{}}
	f.Roles = signing.Roles{Root: role(f, 1, root), Release: role(f, 2, rel1, rel2), Rollout: role(f, 1, rollout)}
	trustEnv, _ := signing.SignTrust(ctx, f, root)

	m, _ := modules.Parse([]byte("name: blink\nversion: 1.0.0\nabi: handler/v1\n"))
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	releaseEnv, _ := signing.SignRelease(ctx, m, bytes.NewReader(wasm), rel1, rel2)
	digest, size, _ := signing.HashModule(bytes.NewReader(wasm))
	desiredEnv, _ := signing.SignDesired(ctx, &signing.Desired{
		Target: signing.Target{Group: "lab"}, Sequence: 1, Expires: now.Add(24 * time.Hour),
		Modules: []signing.ModuleTarget{{
			Release: signing.ReleaseRef{Name: "blink", Version: "1.0.0", SHA256: digest, Size: size},
			Rollout: "r-1", WavePercent: 100,
		}},
	}, rollout)

	// Agent side.
	trust, err := signing.ParseTrust(trustEnv) // provisioned; later versions via trust.Rotate
	if err != nil {
		panic(err)
	}
	v := &signing.Verifier{Trust: trust, Now: func() time.Time { return now }}
	d, err := v.VerifyDesired(desiredEnv, signing.Target{Group: "lab"}, 0)
	if err != nil {
		panic(err)
	}
	mt := d.Modules[0]
	want := mt.For("pi-0042") // in the wave: the new release
	r, err := v.VerifyRelease(releaseEnv)
	if err == nil {
		err = signing.CheckRelease(*want, r)
	}
	if err == nil {
		err = signing.CheckRollback("0.9.0", *want, mt.Rollback)
	}
	if err == nil {
		err = r.VerifyModule(bytes.NewReader(wasm)) // tee into module.wasm.unverified meanwhile
	}
	fmt.Println(err, r.Manifest.Name, r.Manifest.Version, len(r.SignedBy), "signatures")

	// The same desired state again is a replay.
	_, err = v.VerifyDesired(desiredEnv, signing.Target{Group: "lab"}, d.Sequence)
	fmt.Println(errors.Is(err, signing.ErrReplay))
	// Output:
	// <nil> blink 1.0.0 2 signatures
	// true
}
