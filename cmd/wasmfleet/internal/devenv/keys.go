package devenv

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// TrustLifetime is how long the dev trust file is valid from its creation.
const TrustLifetime = 5 * 365 * 24 * time.Hour

// The files of the keys directory, as `wasmfleet keygen` and `wasmfleet trust init` write
// them: NAME.key is an ENCRYPTED SIGSTORE PRIVATE KEY (cosign's format), NAME.pub its public
// key, root.json the trust file, password the password of the three keys (one line).
const (
	passwordFile = "password"
	trustFile    = "root.json"
)

var keyNames = []string{signing.RoleRoot, signing.RoleRelease, signing.RoleRollout}

func keyFiles() []string {
	out := []string{passwordFile, trustFile}
	for _, n := range keyNames {
		out = append(out, n+".key", n+".pub")
	}
	return out
}

// devKeys are the dev environment's keys: one of each role (threshold 1), and the trust
// file that names them.
type devKeys struct {
	dir      string
	password []byte
	release  signature.SignerVerifier
	rollout  signature.SignerVerifier
	trust    *signing.Trust
	created  bool
}

func (k *devKeys) path(name string) string { return filepath.Join(k.dir, name) }

// loadKeys opens the keys in dir, making them first when dir holds none. A directory with
// some of the files but not all is refused rather than completed: keys that devices may
// already trust are never replaced behind the user's back.
func loadKeys(ctx context.Context, dir string) (*devKeys, error) {
	var have, missing []string
	for _, f := range keyFiles() {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			have = append(have, f)
		} else if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, f)
		} else {
			return nil, fmt.Errorf("dev keys: %w", err)
		}
	}
	created := false
	switch {
	case len(have) == 0:
		if err := makeKeys(ctx, dir); err != nil {
			return nil, fmt.Errorf("dev keys: %w", err)
		}
		created = true
	case len(missing) > 0:
		return nil, fmt.Errorf("dev keys: %s holds %s but not %s; remove the dev directory to start over with new keys",
			dir, strings.Join(have, ", "), strings.Join(missing, ", "))
	}
	k, err := openKeys(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("dev keys in %s: %w", dir, err)
	}
	k.created = created
	return k, nil
}

// makeKeys writes a new set of keys and a trust file into a temporary directory beside dir,
// then renames it to dir, so that an interrupted run leaves either all of them or none.
func makeKeys(ctx context.Context, dir string) error {
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, ".keys-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after a successful rename it is gone already
	var pwb [16]byte
	if _, err := rand.Read(pwb[:]); err != nil {
		return err
	}
	pw := []byte(hex.EncodeToString(pwb[:]))
	if err := atomicfile.Write(filepath.Join(tmp, passwordFile), append(pw, '\n'), 0o600); err != nil {
		return err
	}
	signers := map[string]signature.Signer{}
	pubs := map[string]crypto.PublicKey{}
	for _, name := range keyNames {
		priv, err := keys.Generate(keys.ECDSAP256)
		if err != nil {
			return err
		}
		privPEM, err := keys.MarshalPrivate(priv, pw)
		if err != nil {
			return err
		}
		pubPEM, err := keys.MarshalPublic(priv.Public())
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(tmp, name+".key"), privPEM, 0o600); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(tmp, name+".pub"), pubPEM, 0o644); err != nil {
			return err
		}
		if signers[name], err = keys.Signer(priv); err != nil {
			return err
		}
		pubs[name] = priv.Public()
	}
	tf := &signing.TrustFile{Version: 1, Expires: time.Now().Add(TrustLifetime).UTC().Truncate(time.Second),
		Keys: map[string]signing.TrustKey{}}
	for _, name := range keyNames {
		id, k, err := signing.NewTrustKey(pubs[name])
		if err != nil {
			return err
		}
		tf.Keys[id] = k
		role := signing.Role{KeyIDs: []string{id}, Threshold: 1}
		switch name {
		case signing.RoleRoot:
			tf.Roles.Root = role
		case signing.RoleRelease:
			tf.Roles.Release = role
		case signing.RoleRollout:
			tf.Roles.Rollout = role
		}
	}
	env, err := signing.SignTrust(ctx, tf, signers[signing.RoleRoot])
	if err != nil {
		return fmt.Errorf("sign the trust file: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, trustFile), env, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the new keys into place: %w", err)
	}
	return atomicfile.SyncDir(parent)
}

// openKeys reads the password, the release and rollout keys and the trust file, and checks
// that they belong together: the trust file verifies and has not expired, the release key
// is a release key of it, and the rollout key a rollout key (controller.CheckSigners).
func openKeys(ctx context.Context, dir string) (*devKeys, error) {
	k := &devKeys{dir: dir}
	b, err := os.ReadFile(k.path(passwordFile))
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	k.password = []byte(strings.TrimSuffix(line, "\r"))
	open := func(name string) (signature.SignerVerifier, string, error) {
		b, err := os.ReadFile(k.path(name + ".key"))
		if err != nil {
			return nil, "", err
		}
		priv, err := keys.ParsePrivate(b, k.password)
		if err != nil {
			return nil, "", fmt.Errorf("%s.key: %w", name, err)
		}
		id, err := keys.ID(priv.Public())
		if err != nil {
			return nil, "", err
		}
		s, err := keys.Signer(priv)
		return s, id, err
	}
	var releaseID string
	if k.release, releaseID, err = open(signing.RoleRelease); err != nil {
		return nil, err
	}
	if k.rollout, _, err = open(signing.RoleRollout); err != nil {
		return nil, err
	}
	tb, err := os.ReadFile(k.path(trustFile))
	if err != nil {
		return nil, err
	}
	if k.trust, err = signing.ParseTrust(tb); err != nil {
		return nil, fmt.Errorf("%s: %w", trustFile, err)
	}
	if err := k.trust.CheckExpiry(time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w; remove the dev directory to start over with new keys", trustFile, err)
	}
	if !slices.Contains(k.trust.KeyRole(releaseID), signing.RoleRelease) {
		return nil, fmt.Errorf("release.key (%s) is not a release key of %s", keys.Short(releaseID), trustFile)
	}
	if err := controller.CheckSigners(ctx, k.trust, []signature.Signer{k.rollout}); err != nil {
		return nil, fmt.Errorf("rollout.key: %w", err)
	}
	return k, nil
}

// signers are the controller's keys: the rollout key.
func (k *devKeys) signers() []signature.Signer { return []signature.Signer{k.rollout} }
