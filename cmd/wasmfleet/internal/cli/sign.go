package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

func init() {
	register("sign", "sign a module release with release keys (or countersign one)", signCmd)
}

const signSynopsis = `--key KEY|KMS-URI [--key ...] --manifest M MODULE.wasm -o release.dsse.json
       wasmfleet sign --key KEY --add-signature release.dsse.json [MODULE.wasm] [-o OUT]
       wasmfleet sign --predicate --manifest M MODULE.wasm [-o predicate.json]
       wasmfleet sign --key ROLLOUT-KEY --desired desired.json [-o desired.dsse.json]`

func signCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "sign", signSynopsis)
	var keyRefs multiFlag
	fs.Var(&keyRefs, "key", "release key: an encrypted key file or awskms://, gcpkms://, azurekms://, hashivault:// (repeat for a threshold)")
	manifestPath := fs.String("manifest", "", "module manifest (YAML)")
	out := fs.String("o", "", "output file (default: stdout; with --add-signature, the release itself)")
	add := fs.String("add-signature", "", "countersign this existing release instead of making one")
	predicate := fs.Bool("predicate", false, "write only the release predicate, for `cosign attest-blob --type "+signing.ReleasePredicateType+" --predicate`")
	desired := fs.String("desired", "", "sign this desired-state document (JSON, see signing.Desired) with rollout keys instead")
	pwFile := fs.String("password-file", "", "read key passwords from this file")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if *desired != "" {
		return signDesired(ctx, env, *desired, keyRefs, fs.Args(), *out, *pwFile)
	}
	if *add != "" {
		return countersign(ctx, env, *add, keyRefs, fs.Args(), *out, *pwFile)
	}
	if fs.NArg() != 1 || *manifestPath == "" {
		return usagef("sign needs --manifest and one MODULE.wasm (usage: wasmfleet sign %s)", signSynopsis)
	}
	if !*predicate && len(keyRefs) == 0 {
		return usagef("sign needs at least one --key")
	}
	mb, err := readFile("--manifest", *manifestPath)
	if err != nil {
		return opError{"manifest", err}
	}
	m, err := modules.Parse(mb)
	if err != nil {
		return opError{"manifest", fmt.Errorf("%s: %w", *manifestPath, err)}
	}
	wasm, err := readFile("module", fs.Arg(0))
	if err != nil {
		return opError{"module", err}
	}
	digest, size, err := signing.HashModule(bytes.NewReader(wasm))
	if err != nil {
		return opError{"module", err}
	}
	if *predicate {
		p, err := signing.ReleasePredicateJSON(m, size)
		if err != nil {
			return opError{"manifest", err}
		}
		return writeOut(env, *out, append(p, '\n'), 0o644)
	}
	signers, ids, err := loadSigners(ctx, env, keyRefs, *pwFile)
	if err != nil {
		return err
	}
	st, err := signing.ReleaseStatement(m, digest, size)
	if err != nil {
		return opError{"manifest", err}
	}
	envl, err := signing.Sign(ctx, signing.ReleasePayloadType, st, signers...)
	if err != nil {
		return opError{"sign", err}
	}
	if err := writeOut(env, *out, envl, 0o644); err != nil {
		return opError{"write", err}
	}
	if *out != "" && *out != "-" {
		fmt.Fprintf(env.Stdout, "signed %s %s (sha256 %s, %d bytes) with %s -> %s\n", m.Name, m.Version, digest, size, shortIDs(ids), *out)
	}
	return nil
}

// countersign adds signatures to an existing release, after checking that it is a valid
// release and, when given, that the module is the one it names.
func countersign(ctx context.Context, env *Env, path string, keyRefs []string, rest []string, out, pwFile string) error {
	if len(keyRefs) == 0 || len(rest) > 1 {
		return usagef("sign --add-signature needs --key and at most one MODULE.wasm")
	}
	b, err := readFile("--add-signature", path)
	if err != nil {
		return opError{"release", err}
	}
	r, _, err := signing.InspectRelease(b)
	if err != nil {
		return refused(fmt.Errorf("%s: %w", path, err))
	}
	if len(rest) == 1 {
		f, err := os.Open(rest[0])
		if err != nil {
			return opError{"module", err}
		}
		defer f.Close()
		if err := r.VerifyModule(f); err != nil {
			return refused(err)
		}
	}
	signers, ids, err := loadSigners(ctx, env, keyRefs, pwFile)
	if err != nil {
		return err
	}
	nb, err := signing.AddSignatures(ctx, b, signers...)
	if err != nil {
		return opError{"sign", err}
	}
	if out == "" {
		out = path
	}
	if err := writeOut(env, out, nb, 0o644); err != nil {
		return opError{"write", err}
	}
	if out != "-" {
		n := 0
		if e, err := signing.ParseEnvelope(nb); err == nil {
			n = len(e.Signatures)
		}
		fmt.Fprintf(env.Stdout, "countersigned %s %s with %s -> %s (%d signatures)\n", r.Manifest.Name, r.Manifest.Version, shortIDs(ids), out, n)
	}
	return nil
}

// signDesired signs a desired-state document written as JSON. The rollout controller uses
// signing.SignDesired directly; this is for operators and tests.
func signDesired(ctx context.Context, env *Env, path string, keyRefs, rest []string, out, pwFile string) error {
	if len(keyRefs) == 0 || len(rest) != 0 {
		return usagef("sign --desired needs --key and no other argument")
	}
	b, err := readFile("--desired", path)
	if err != nil {
		return opError{"desired", err}
	}
	var d signing.Desired
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return opError{"malformed", fmt.Errorf("%s: %w", path, err)}
	}
	signers, ids, err := loadSigners(ctx, env, keyRefs, pwFile)
	if err != nil {
		return err
	}
	nb, err := signing.SignDesired(ctx, &d, signers...)
	if err != nil {
		return refused(err)
	}
	if err := writeOut(env, out, nb, 0o644); err != nil {
		return opError{"write", err}
	}
	if out != "" && out != "-" {
		fmt.Fprintf(env.Stdout, "signed desired state for %s, sequence %d, %d modules, with %s -> %s\n", d.Target, d.Sequence, len(d.Modules), shortIDs(ids), out)
	}
	return nil
}

func shortIDs(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = keys.Short(id)
	}
	return strings.Join(s, ", ")
}

// refused turns a signing refusal into "error: <kind>: <reason>" (exit 2).
func refused(err error) error {
	k := signing.KindOf(err)
	if k == nil {
		return opError{"error", err}
	}
	msg := strings.Replace(err.Error(), k.Error()+": ", "", 1)
	return opError{k.Error(), fmt.Errorf("%s", msg)}
}
