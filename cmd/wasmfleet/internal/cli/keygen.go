package cli

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"golang.org/x/term"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/signing/keys"
	"github.com/wasmfleet/wasmfleet/signing/kms"
)

func init() {
	register("keygen", "make a signing key pair (NAME.key encrypted, NAME.pub)", keygenCmd)
}

const keygenSynopsis = "[--algo ecdsa-p256|ed25519] [--password-file F] [--force] NAME"

// Password sources, in order: --password-file, $WASMFLEET_KEY_PASSWORD, $COSIGN_PASSWORD
// (so cosign's keys and scripts work unchanged), then a prompt when stdin is a terminal.
const (
	passwordEnv       = "WASMFLEET_KEY_PASSWORD"
	cosignPasswordEnv = "COSIGN_PASSWORD"
)

func keygenCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "keygen", keygenSynopsis)
	algo := fs.String("algo", keys.ECDSAP256, "key algorithm: ecdsa-p256 or ed25519")
	pwFile := fs.String("password-file", "", "read the password from this file (first line)")
	force := fs.Bool("force", false, "overwrite NAME.key and NAME.pub")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("keygen needs one NAME (usage: wasmfleet keygen %s)", keygenSynopsis)
	}
	if *algo != keys.ECDSAP256 && *algo != keys.Ed25519 {
		return usagef("--algo %q: want ecdsa-p256 or ed25519", *algo)
	}
	name := strings.TrimSuffix(strings.TrimSuffix(fs.Arg(0), ".key"), ".pub")
	keyPath, pubPath := name+".key", name+".pub"
	if !*force {
		for _, p := range []string{keyPath, pubPath} {
			if _, err := os.Stat(p); err == nil {
				return opError{"exists", fmt.Errorf("%s exists (use --force to overwrite)", p)}
			}
		}
	}
	pw, err := password(env, *pwFile, keyPath, true)
	if err != nil {
		return err
	}
	priv, err := keys.Generate(*algo)
	if err != nil {
		return opError{"keygen", err}
	}
	privPEM, err := keys.MarshalPrivate(priv, pw)
	if err != nil {
		return opError{"keygen", err}
	}
	pubPEM, err := keys.MarshalPublic(priv.Public())
	if err != nil {
		return opError{"keygen", err}
	}
	id, err := keys.ID(priv.Public())
	if err != nil {
		return opError{"keygen", err}
	}
	if err := atomicfile.Write(keyPath, privPEM, 0o600); err != nil {
		return opError{"write", err}
	}
	if err := atomicfile.Write(pubPath, pubPEM, 0o644); err != nil {
		return opError{"write", err}
	}
	fmt.Fprintf(env.Stdout, "wrote %s and %s (%s, key id %s)\n", keyPath, pubPath, *algo, id)
	return nil
}

// password returns the password for the private key at what, from the first source set.
func password(env *Env, file, what string, confirm bool) ([]byte, error) {
	if file != "" {
		b, err := readFile("--password-file", file)
		if err != nil {
			return nil, opError{"password", err}
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return []byte(strings.TrimSuffix(line, "\r")), nil
	}
	for _, name := range []string{passwordEnv, cosignPasswordEnv} {
		if v, ok := os.LookupEnv(name); ok {
			return []byte(v), nil
		}
	}
	f, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, opError{"password", fmt.Errorf("no password for %s: set %s (or %s), use --password-file, or run in a terminal",
			what, passwordEnv, cosignPasswordEnv)}
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprintf(env.Stderr, "%s", prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		return b, err
	}
	pw, err := read("password for " + what + ": ")
	if err != nil {
		return nil, opError{"password", err}
	}
	if confirm {
		again, err := read("again: ")
		if err != nil {
			return nil, opError{"password", err}
		}
		if string(again) != string(pw) {
			return nil, opError{"password", errors.New("the passwords differ")}
		}
	}
	return pw, nil
}

// loadSigner opens a signing key: a KMS reference or an encrypted private key file.
func loadSigner(ctx context.Context, env *Env, ref, pwFile string) (signature.SignerVerifier, error) {
	if kms.IsRef(ref) {
		sv, err := kms.Signer(ctx, ref)
		if err != nil {
			return nil, opError{"key", err}
		}
		return sv, nil
	}
	b, err := readFile("key", ref)
	if err != nil {
		return nil, opError{"key", err}
	}
	pw, err := password(env, pwFile, ref, false)
	if err != nil {
		return nil, err
	}
	priv, err := keys.ParsePrivate(b, pw)
	if err != nil {
		return nil, opError{"key", fmt.Errorf("%s: %w", ref, err)}
	}
	sv, err := keys.Signer(priv)
	if err != nil {
		return nil, opError{"key", fmt.Errorf("%s: %w", ref, err)}
	}
	return sv, nil
}

// loadSigners opens every key in refs.
func loadSigners(ctx context.Context, env *Env, refs []string, pwFile string) ([]signature.Signer, []string, error) {
	var out []signature.Signer
	var ids []string
	for _, ref := range refs {
		sv, err := loadSigner(ctx, env, ref, pwFile)
		if err != nil {
			return nil, nil, err
		}
		pub, err := sv.PublicKey(options.WithContext(ctx))
		if err != nil {
			return nil, nil, opError{"key", fmt.Errorf("%s: %w", ref, err)}
		}
		id, err := keys.ID(pub)
		if err != nil {
			return nil, nil, opError{"key", err}
		}
		out, ids = append(out, sv), append(ids, id)
	}
	return out, ids, nil
}

// loadPublic reads a public key: a .pub PEM file, or the public half of a KMS key.
func loadPublic(ctx context.Context, ref string) (crypto.PublicKey, error) {
	if kms.IsRef(ref) {
		sv, err := kms.Signer(ctx, ref)
		if err != nil {
			return nil, opError{"key", err}
		}
		pub, err := sv.PublicKey(options.WithContext(ctx))
		if err != nil {
			return nil, opError{"key", fmt.Errorf("%s: %w", ref, err)}
		}
		return pub, nil
	}
	b, err := readFile("public key", ref)
	if err != nil {
		return nil, opError{"key", err}
	}
	pub, err := keys.ParsePublic(b)
	if err != nil {
		hint := ""
		if strings.Contains(string(b), "PRIVATE KEY") {
			hint = " (this is a private key: give its .pub)"
		}
		return nil, opError{"key", fmt.Errorf("%s%s: %w", ref, hint, err)}
	}
	return pub, nil
}

// writeOut writes data to path, or to stdout when path is "" or "-".
func writeOut(env *Env, path string, data []byte, perm os.FileMode) error {
	if path == "" || path == "-" {
		_, err := env.Stdout.Write(data)
		return err
	}
	return atomicfile.Write(path, data, perm)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
