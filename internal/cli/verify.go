package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wasmfleet/wasmfleet/signing"
)

func init() {
	register("verify", "verify a signed release and its module against a trust file", verifyCmd)
}

// The release may also be a sigstore bundle (cosign attest-blob --bundle): its DSSE envelope
// is verified like any other; its verification material is not used.
const verifySynopsis = "--trust root.json RELEASE.dsse.json MODULE.wasm"

func verifyCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "verify", verifySynopsis)
	trustPath := fs.String("trust", "", "the trust file (trust/root.json)")
	at := fs.String("at", "", "check expiry at this time (RFC 3339) instead of now")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if *trustPath == "" || fs.NArg() != 2 {
		return usagef("verify needs --trust, a release and a module (usage: wasmfleet verify %s)", verifySynopsis)
	}
	now := time.Now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--at: %v", err)
		}
		now = func() time.Time { return t }
	}
	tb, err := readFile("--trust", *trustPath)
	if err != nil {
		return opError{"trust", err}
	}
	trust, err := signing.ParseTrust(tb)
	if err != nil {
		return refused(fmt.Errorf("%s: %w", *trustPath, err))
	}
	rb, err := readFile("release", fs.Arg(0))
	if err != nil {
		return opError{"release", err}
	}
	if signing.IsBundle(rb) { // cosign v3's default output
		if rb, err = signing.EnvelopeFromBundle(rb); err != nil {
			return refused(err)
		}
	}
	f, err := os.Open(fs.Arg(1))
	if err != nil {
		return opError{"module", err}
	}
	defer f.Close()
	v := &signing.Verifier{Trust: trust, Now: now}
	r, err := v.VerifyReleaseModule(rb, f)
	if err != nil {
		return refused(err)
	}
	fmt.Fprintf(env.Stdout, "ok: %s %s sha256:%s %d bytes, signed by %d of %d release keys (%s; threshold %d), trust file version %d\n",
		r.Manifest.Name, r.Manifest.Version, r.SHA256, r.Size, len(r.SignedBy), r.RoleKeys, shortIDs(r.SignedBy), r.Threshold, r.TrustVersion)
	return nil
}
