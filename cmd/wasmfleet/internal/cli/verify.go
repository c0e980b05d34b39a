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
const verifySynopsis = `--trust root.json RELEASE.dsse.json MODULE.wasm
       wasmfleet verify --trust root.json --desired DESIRED.dsse.json (--group G | --device D) [--last-seq N] [--as DEVICE]`

func verifyCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "verify", verifySynopsis)
	trustPath := fs.String("trust", "", "the trust file (trust/root.json)")
	at := fs.String("at", "", "check expiry at this time (RFC 3339) instead of now")
	desired := fs.String("desired", "", "verify this desired-state envelope instead of a release")
	group := fs.String("group", "", "with --desired: the group it must be for")
	device := fs.String("device", "", "with --desired: the device it must be for")
	lastSeq := fs.Uint64("last-seq", 0, "with --desired: the sequence last applied (replays are refused)")
	as := fs.String("as", "", "with --desired: show which release this device id would run")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if *desired != "" {
		if *trustPath == "" || fs.NArg() != 0 || (*group == "") == (*device == "") {
			return usagef("verify --desired needs --trust and one of --group or --device (usage: wasmfleet verify %s)", verifySynopsis)
		}
	} else if *trustPath == "" || fs.NArg() != 2 {
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
	if *desired != "" {
		return verifyDesired(env, &signing.Verifier{Trust: trust, Now: now}, *desired, signing.Target{Group: *group, Device: *device}, *lastSeq, *as)
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

func verifyDesired(env *Env, v *signing.Verifier, path string, want signing.Target, lastSeq uint64, as string) error {
	b, err := readFile("--desired", path)
	if err != nil {
		return opError{"desired", err}
	}
	d, err := v.VerifyDesired(b, want, lastSeq)
	if err != nil {
		return refused(err)
	}
	fmt.Fprintf(env.Stdout, "ok: desired state for %s, sequence %d, expires %s, %d modules\n",
		d.Target, d.Sequence, d.Expires.UTC().Format(time.RFC3339), len(d.Modules))
	for _, m := range d.Modules {
		line := fmt.Sprintf("  %s: rollout %s, %v%% on %s", m.Release.Name, m.Rollout, m.WavePercent, m.Release.Version)
		if m.Previous != nil {
			line += ", the rest on " + m.Previous.Version
		}
		if m.Rollback {
			line += " (rollback)"
		}
		if as != "" {
			if r := m.For(as); r != nil {
				line += fmt.Sprintf("; %s runs %s", as, r.Version)
			} else {
				line += fmt.Sprintf("; %s runs nothing yet", as)
			}
		}
		fmt.Fprintln(env.Stdout, line)
	}
	return nil
}
