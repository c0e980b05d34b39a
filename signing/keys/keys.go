// Package keys holds wasmfleet's signing keys on disk: generating ECDSA P-256 (the default)
// and ed25519 key pairs, reading and writing them as PEM (private keys as cosign's
// "ENCRYPTED SIGSTORE PRIVATE KEY", public keys as "PUBLIC KEY"), and key ids.
//
// A key id is the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo (the PKIX
// encoding in the PEM file), the same digest Rekor uses to name a log key. It identifies a
// key in the trust file and is the hint in a DSSE signature's keyid field.
//
// It does not talk to a KMS (see package signing/kms, which only the fleet CLI links) and it
// does not prompt for passwords: callers pass the password in.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Algorithms a key may use.
const (
	ECDSAP256 = "ecdsa-p256" // ECDSA on P-256 with SHA-256: the default (cosign's, and every cloud KMS has it)
	Ed25519   = "ed25519"
)

// ErrNotPublicKey and the other errors of this package say what was wrong with a key file.
var (
	ErrPEM           = errors.New("not a PEM key")
	ErrUnsupported   = errors.New("unsupported key type (want ECDSA P-256 or ed25519)")
	ErrWrongPassword = errors.New("wrong password, or not an encrypted key")
)

// Generate makes a key pair with algo (ECDSAP256 or Ed25519).
func Generate(algo string) (crypto.Signer, error) {
	switch algo {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("key algorithm %q: %w", algo, ErrUnsupported)
}

// Algorithm names pub's algorithm, or returns ErrUnsupported.
func Algorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return Ed25519, nil
		}
	}
	return "", ErrUnsupported
}

// ID is the key id of pub: lowercase hex SHA-256 of its DER SubjectPublicKeyInfo.
func ID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidID reports whether s has the form of a key id.
func ValidID(s string) bool { return idRE.MatchString(s) }

// Short is the first 12 characters of a key id, for messages.
func Short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// MarshalPublic encodes pub as a "PUBLIC KEY" PEM block.
func MarshalPublic(pub crypto.PublicKey) ([]byte, error) {
	if _, err := Algorithm(pub); err != nil {
		return nil, err
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return b, nil
}

// ParsePublic decodes a "PUBLIC KEY" PEM block holding an ECDSA P-256 or ed25519 key.
// Anything after the first PEM block is an error.
func ParsePublic(data []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("public key: %w", ErrPEM)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, fmt.Errorf("public key: data after the PEM block: %w", ErrPEM)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key: PEM block is %q, want \"PUBLIC KEY\": %w", block.Type, ErrPEM)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %v: %w", err, ErrPEM)
	}
	if _, err := Algorithm(pub); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// MarshalPrivate encrypts priv with password (scrypt and secretbox, as cosign does) and
// encodes it as an "ENCRYPTED SIGSTORE PRIVATE KEY" PEM block. An empty password is allowed,
// as with cosign, but the key is still encrypted.
func MarshalPrivate(priv crypto.Signer, password []byte) ([]byte, error) {
	if _, err := Algorithm(priv.Public()); err != nil {
		return nil, err
	}
	if password == nil {
		password = []byte{}
	}
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, der), nil
}

// ParsePrivate decrypts an "ENCRYPTED SIGSTORE PRIVATE KEY" (or cosign's older "ENCRYPTED
// COSIGN PRIVATE KEY") PEM block with password.
func ParsePrivate(data, password []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("private key: %w", ErrPEM)
	}
	switch block.Type {
	case string(cryptoutils.EncryptedSigstorePrivateKeyPEMType), "ENCRYPTED COSIGN PRIVATE KEY":
	case "PUBLIC KEY":
		return nil, fmt.Errorf("private key: this is a public key: %w", ErrPEM)
	default:
		return nil, fmt.Errorf("private key: PEM block is %q, want %q: %w", block.Type, cryptoutils.EncryptedSigstorePrivateKeyPEMType, ErrPEM)
	}
	if password == nil {
		password = []byte{}
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("private key: %w", ErrWrongPassword)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key: %w", ErrUnsupported)
	}
	if _, err := Algorithm(s.Public()); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return s, nil
}

// Verifier returns sigstore's verifier for pub: ECDSA with SHA-256, or pure ed25519.
func Verifier(pub crypto.PublicKey) (signature.Verifier, error) {
	if _, err := Algorithm(pub); err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("load verifier: %w", err)
	}
	return v, nil
}

// Signer returns sigstore's signer for priv: ECDSA with SHA-256, or pure ed25519.
func Signer(priv crypto.Signer) (signature.SignerVerifier, error) {
	if _, err := Algorithm(priv.Public()); err != nil {
		return nil, err
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	return sv, nil
}
