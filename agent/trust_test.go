package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// TestTrustRotationFromBucket: the fleet rotates its trust file (version 2: a new release
// key) and puts it in the bucket; a release signed only by the new key is installed, because
// the agent fetches the rotation, checks it under the old and the new root, and adopts it.
// A forged version 3 (not signed by the root) is refused and changes nothing.
func TestTrustRotationFromBucket(t *testing.T) {
	f := newFleet(t)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	v1 := f.publishRelease(manifest, wasm)
	f.publishDesired(f.desiredDoc("kitchen", everyone(v1, "r1")))
	f.startAgent(f.agentConfig("pi-rot", "kitchen"))
	f.waitEvent("pi-rot", report.EventActivated, "1.0.0")

	newRelease := signingtest.NewSigner(t)
	f.put(objects.TrustKey, f.trustFile(t, 2, f.root, []signature.Signer{f.root}, newRelease))
	v11 := f.publishRelease(strings.Replace(manifest, "version: 1.0.0", "version: 1.1.0", 1), wasm, newRelease)
	f.publishDesired(f.desiredDoc("kitchen", everyone(v11, "r2")))
	f.waitEvent("pi-rot", report.EventActivated, "1.1.0")
	f.waitStatus("pi-rot", func(s *report.Status) bool { return s.TrustVersion == 2 }, "trust version 2")

	// Version 3 signed by a stranger instead of the root: refused, version 2 stays.
	f.put(objects.TrustKey, f.trustFile(t, 3, f.stranger, []signature.Signer{f.stranger}, newRelease))
	v12 := f.publishRelease(strings.Replace(manifest, "version: 1.0.0", "version: 1.2.0", 1), wasm, newRelease)
	f.publishDesired(f.desiredDoc("kitchen", everyone(v12, "r3")))
	f.waitEvent("pi-rot", report.EventActivated, "1.2.0")
	s := f.waitStatus("pi-rot", func(s *report.Status) bool { return strings.Contains(s.LastError, "trust file in the bucket refused") },
		"the forged trust file reported")
	if s.TrustVersion != 2 {
		t.Fatalf("trust version %d after a forged rotation", s.TrustVersion)
	}
}

// trustFile signs a trust file of version v whose root role is root (signed by signers, the
// roots of this and the previous version) and whose release role is release; the rollout
// role stays the fleet's.
func (f *fleet) trustFile(t *testing.T, v uint64, root signature.Signer, signers []signature.Signer, release signature.Signer) []byte {
	t.Helper()
	tf := signingtest.NewTrustFile(v, time.Now().Add(365*24*time.Hour))
	tf.Roles = signing.Roles{Root: signingtest.Role(t, tf, 1, root), Release: signingtest.Role(t, tf, 1, release), Rollout: signingtest.Role(t, tf, 1, f.rollout)}
	return signingtest.Sign(t, tf, signers...)
}
