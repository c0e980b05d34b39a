package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func init() {
	register("trust", "make, rotate, countersign or show the trust file (trust/root.json)", trustCmd)
}

const trustSynopsis = `init --root-key KEY [--root-key ...] [--root-pub PUB ...] --release-key PUB [...] --rollout-key PUB [...]
                     [--root-threshold N] [--release-threshold N] [--rollout-threshold N] [--expires 365d] [-o root.json]
       wasmfleet trust rotate --trust root.json --sign-key KEY [...] [--root-pub PUB ...] [--release-key PUB ...]
                     [--rollout-key PUB ...] [--*-threshold N] [--expires 365d] [--partial] -o next.json
       wasmfleet trust sign --key KEY [--key ...] [--trust previous.json] FILE [-o OUT]
       wasmfleet trust show [--trust previous.json] FILE`

func trustCmd(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: wasmfleet trust %s", trustSynopsis)
	}
	switch args[0] {
	case "init":
		return trustInit(ctx, env, args[1:])
	case "rotate":
		return trustRotate(ctx, env, args[1:])
	case "sign":
		return trustSign(ctx, env, args[1:])
	case "show":
		return trustShow(env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(env.Stderr, "usage: wasmfleet trust %s\n", trustSynopsis)
		return nil
	}
	return usagef("unknown trust subcommand %q (init, rotate, sign, show)", args[0])
}

// roleFlags are the flags that set the keys and thresholds of the three roles.
type roleFlags struct {
	rootPubs, releaseKeys, rolloutKeys multiFlag
	rootT, releaseT, rolloutT          *int
	expires                            *string
}

func addRoleFlags(fs *flag.FlagSet, defT int) *roleFlags {
	rf := &roleFlags{}
	fs.Var(&rf.rootPubs, "root-pub", "root public key (.pub or KMS URI); init: one that does not sign now; rotate: the new root role (replaces it); repeatable")
	fs.Var(&rf.releaseKeys, "release-key", "release public key (.pub or KMS URI); repeatable")
	fs.Var(&rf.rolloutKeys, "rollout-key", "rollout public key (.pub or KMS URI); repeatable")
	rf.rootT = fs.Int("root-threshold", defT, "root keys that must sign")
	rf.releaseT = fs.Int("release-threshold", defT, "release keys that must sign a release")
	rf.rolloutT = fs.Int("rollout-threshold", defT, "rollout keys that must sign a desired state")
	rf.expires = fs.String("expires", "365d", "expiry: a duration from now (365d, 8760h) or an RFC 3339 time")
	return rf
}

func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return time.Time{}, fmt.Errorf("%q is not a number of days", s)
		}
		return now.Add(time.Duration(n) * 24 * time.Hour).UTC().Truncate(time.Second), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is not a duration (365d, 8760h) or an RFC 3339 time", s)
	}
	return now.Add(d).UTC().Truncate(time.Second), nil
}

// setRole replaces role r of f with the public keys refs.
func setRole(ctx context.Context, f *signing.TrustFile, r *signing.Role, refs []string, pubs ...any) error {
	r.KeyIDs = nil
	add := func(pub any) error {
		id, k, err := signing.NewTrustKey(pub)
		if err != nil {
			return opError{"key", err}
		}
		f.Keys[id] = k
		for _, have := range r.KeyIDs {
			if have == id {
				return nil
			}
		}
		r.KeyIDs = append(r.KeyIDs, id)
		return nil
	}
	for _, p := range pubs {
		if err := add(p); err != nil {
			return err
		}
	}
	for _, ref := range refs {
		pub, err := loadPublic(ctx, ref)
		if err != nil {
			return err
		}
		if err := add(pub); err != nil {
			return err
		}
	}
	return nil
}

// pruneKeys drops keys no role names.
func pruneKeys(f *signing.TrustFile) {
	used := map[string]bool{}
	for _, r := range []signing.Role{f.Roles.Root, f.Roles.Release, f.Roles.Rollout} {
		for _, id := range r.KeyIDs {
			used[id] = true
		}
	}
	for id := range f.Keys {
		if !used[id] {
			delete(f.Keys, id)
		}
	}
}

func trustInit(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "trust", trustSynopsis)
	var rootKeys multiFlag
	fs.Var(&rootKeys, "root-key", "root signing key (key file or KMS URI); repeatable")
	rf := addRoleFlags(fs, 1)
	out := fs.String("o", "root.json", "output file")
	pwFile := fs.String("password-file", "", "read key passwords from this file")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if len(rootKeys) == 0 || len(rf.releaseKeys) == 0 || len(rf.rolloutKeys) == 0 || fs.NArg() != 0 {
		return usagef("trust init needs --root-key, --release-key and --rollout-key (usage: wasmfleet trust %s)", trustSynopsis)
	}
	exp, err := parseExpiry(*rf.expires, time.Now())
	if err != nil {
		return usagef("--expires: %v", err)
	}
	signers, _, err := loadSigners(ctx, env, rootKeys, *pwFile)
	if err != nil {
		return err
	}
	f := &signing.TrustFile{Version: 1, Expires: exp, Keys: map[string]signing.TrustKey{}}
	var rootPubs []any
	for _, s := range signers {
		p, err := s.PublicKey()
		if err != nil {
			return opError{"key", err}
		}
		rootPubs = append(rootPubs, p)
	}
	if err := setRole(ctx, f, &f.Roles.Root, rf.rootPubs, rootPubs...); err != nil {
		return err
	}
	if err := setRole(ctx, f, &f.Roles.Release, rf.releaseKeys); err != nil {
		return err
	}
	if err := setRole(ctx, f, &f.Roles.Rollout, rf.rolloutKeys); err != nil {
		return err
	}
	f.Roles.Root.Threshold, f.Roles.Release.Threshold, f.Roles.Rollout.Threshold = *rf.rootT, *rf.releaseT, *rf.rolloutT
	b, err := signing.SignTrust(ctx, f, signers...)
	if err != nil {
		return refused(err)
	}
	t, err := signing.ParseTrust(b)
	if err != nil {
		return refused(fmt.Errorf("the new trust file does not verify (give enough --root-key for --root-threshold): %w", err))
	}
	if err := writeOut(env, *out, b, 0o644); err != nil {
		return opError{"write", err}
	}
	if *out != "-" {
		fmt.Fprintf(env.Stdout, "wrote %s: trust file version 1, expires %s\n", *out, exp.Format(time.RFC3339))
		showTrust(env.Stdout, t)
	}
	return nil
}

func trustRotate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "trust", trustSynopsis)
	cur := fs.String("trust", "", "the current trust file (version N)")
	var signKeys multiFlag
	fs.Var(&signKeys, "sign-key", "root key that signs version N+1 (old and new root thresholds must both be met); repeatable")
	rf := addRoleFlags(fs, 0)
	partial := fs.Bool("partial", false, "write the file even if thresholds are not met yet (others countersign with trust sign)")
	out := fs.String("o", "", "output file for version N+1")
	pwFile := fs.String("password-file", "", "read key passwords from this file")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if *cur == "" || *out == "" || len(signKeys) == 0 || fs.NArg() != 0 {
		return usagef("trust rotate needs --trust, --sign-key and -o (usage: wasmfleet trust %s)", trustSynopsis)
	}
	b, err := readFile("--trust", *cur)
	if err != nil {
		return opError{"trust", err}
	}
	old, err := signing.ParseTrust(b)
	if err != nil {
		return refused(fmt.Errorf("%s: %w", *cur, err))
	}
	exp, err := parseExpiry(*rf.expires, time.Now())
	if err != nil {
		return usagef("--expires: %v", err)
	}
	f := old.File
	f.Version++
	f.Expires = exp
	f.Keys = map[string]signing.TrustKey{}
	for id, k := range old.File.Keys {
		f.Keys[id] = k
	}
	copyRole := func(r signing.Role) signing.Role {
		return signing.Role{KeyIDs: append([]string(nil), r.KeyIDs...), Threshold: r.Threshold}
	}
	f.Roles = signing.Roles{Root: copyRole(f.Roles.Root), Release: copyRole(f.Roles.Release), Rollout: copyRole(f.Roles.Rollout)}
	if len(rf.rootPubs) > 0 {
		if err := setRole(ctx, &f, &f.Roles.Root, rf.rootPubs); err != nil {
			return err
		}
	}
	if len(rf.releaseKeys) > 0 {
		if err := setRole(ctx, &f, &f.Roles.Release, rf.releaseKeys); err != nil {
			return err
		}
	}
	if len(rf.rolloutKeys) > 0 {
		if err := setRole(ctx, &f, &f.Roles.Rollout, rf.rolloutKeys); err != nil {
			return err
		}
	}
	for _, x := range []struct {
		t *int
		r *signing.Role
	}{{rf.rootT, &f.Roles.Root}, {rf.releaseT, &f.Roles.Release}, {rf.rolloutT, &f.Roles.Rollout}} {
		if *x.t > 0 {
			x.r.Threshold = *x.t
		}
	}
	pruneKeys(&f)
	signers, _, err := loadSigners(ctx, env, signKeys, *pwFile)
	if err != nil {
		return err
	}
	nb, err := signing.SignTrust(ctx, &f, signers...)
	if err != nil {
		return refused(err)
	}
	next, err := old.Rotate(nb, time.Now())
	if err != nil && !*partial {
		return refused(fmt.Errorf("version %d would not be accepted by devices holding version %d (use --partial to write it for countersigning): %w",
			f.Version, old.Version(), err))
	}
	if err := writeOut(env, *out, nb, 0o644); err != nil {
		return opError{"write", err}
	}
	if err != nil {
		fmt.Fprintf(env.Stdout, "wrote %s: trust file version %d, NOT YET ACCEPTABLE: %s\n", *out, f.Version, oneLine(err.Error()))
		return nil
	}
	fmt.Fprintf(env.Stdout, "wrote %s: trust file version %d (rotates from %d), expires %s\n", *out, f.Version, old.Version(), exp.Format(time.RFC3339))
	showTrust(env.Stdout, next)
	return nil
}

func trustSign(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "trust", trustSynopsis)
	var keyRefs multiFlag
	fs.Var(&keyRefs, "key", "root key to countersign with; repeatable")
	prev := fs.String("trust", "", "the previous version, to check the rotation")
	out := fs.String("o", "", "output file (default: FILE itself)")
	pwFile := fs.String("password-file", "", "read key passwords from this file")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if len(keyRefs) == 0 || fs.NArg() != 1 {
		return usagef("trust sign needs --key and one FILE")
	}
	b, err := readFile("trust file", fs.Arg(0))
	if err != nil {
		return opError{"trust", err}
	}
	if _, _, err := signing.InspectTrust(b); err != nil {
		return refused(err)
	}
	signers, _, err := loadSigners(ctx, env, keyRefs, *pwFile)
	if err != nil {
		return err
	}
	nb, err := signing.AddSignatures(ctx, b, signers...)
	if err != nil {
		return opError{"sign", err}
	}
	if *out == "" {
		*out = fs.Arg(0)
	}
	if err := writeOut(env, *out, nb, 0o644); err != nil {
		return opError{"write", err}
	}
	fmt.Fprintf(env.Stdout, "countersigned -> %s; %s\n", *out, trustStatus(nb, *prev))
	return nil
}

// trustStatus says whether a trust file verifies (and rotates from prev, when given).
func trustStatus(b []byte, prev string) string {
	t, err := signing.ParseTrust(b)
	if err != nil {
		return "root threshold not met yet: " + oneLine(err.Error())
	}
	if prev == "" {
		return fmt.Sprintf("verifies under its own root threshold (signed by %s)", shortIDs(t.SignedBy()))
	}
	pb, err := readFile("--trust", prev)
	if err != nil {
		return err.Error()
	}
	p, err := signing.ParseTrust(pb)
	if err != nil {
		return "previous version does not verify: " + oneLine(err.Error())
	}
	if _, err := p.Rotate(b, time.Now()); err != nil {
		return "not acceptable as a rotation yet: " + oneLine(err.Error())
	}
	return fmt.Sprintf("acceptable as the rotation from version %d", p.Version())
}

func trustShow(env *Env, args []string) error {
	fs := newFlags(env, "trust", trustSynopsis)
	prev := fs.String("trust", "", "the previous version, to check the rotation too")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("trust show needs one FILE")
	}
	b, err := readFile("trust file", fs.Arg(0))
	if err != nil {
		return opError{"trust", err}
	}
	t, _, err := signing.InspectTrust(b)
	if err != nil {
		return refused(err)
	}
	fmt.Fprintf(env.Stdout, "trust file version %d, expires %s\n", t.Version(), t.File.Expires.UTC().Format(time.RFC3339))
	showTrust(env.Stdout, t)
	status := trustStatus(b, *prev)
	fmt.Fprintf(env.Stdout, "signatures: %s\n", status)
	if _, err := signing.ParseTrust(b); err != nil {
		return refused(err)
	}
	if err := t.CheckExpiry(time.Now()); err != nil {
		return refused(err)
	}
	return nil
}

func showTrust(w io.Writer, t *signing.Trust) {
	f := t.File
	for _, r := range []struct {
		name string
		r    signing.Role
	}{{signing.RoleRoot, f.Roles.Root}, {signing.RoleRelease, f.Roles.Release}, {signing.RoleRollout, f.Roles.Rollout}} {
		ids := append([]string(nil), r.r.KeyIDs...)
		sort.Strings(ids)
		fmt.Fprintf(w, "  %-8s %d of %d:", r.name, r.r.Threshold, len(ids))
		for _, id := range ids {
			fmt.Fprintf(w, " %s (%s)", keys.Short(id), f.Keys[id].Algorithm)
		}
		fmt.Fprintln(w)
	}
}
