package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, algo := range []string{ECDSAP256, Ed25519} {
		t.Run(algo, func(t *testing.T) {
			priv, err := Generate(algo)
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := Algorithm(priv.Public()); a != algo {
				t.Fatalf("Algorithm = %q", a)
			}
			privPEM, err := MarshalPrivate(priv, []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(privPEM), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
				t.Fatalf("private key PEM: %.60s", privPEM)
			}
			back, err := ParsePrivate(privPEM, []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParsePrivate(privPEM, []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("wrong password: %v", err)
			}
			pubPEM, err := MarshalPublic(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublic(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			id1, _ := ID(pub)
			id2, _ := ID(back.Public())
			// The id is the SHA-256 of the DER inside the PEM.
			block, _ := pem.Decode(pubPEM)
			sum := sha256.Sum256(block.Bytes)
			if id1 != id2 || id1 != hex.EncodeToString(sum[:]) || !ValidID(id1) {
				t.Fatalf("ids %s %s", id1, id2)
			}
			s, err := Signer(back)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignMessage(strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			v, _ := Verifier(pub)
			if err := v.VerifySignature(strings.NewReader(string(sig)), strings.NewReader("hello")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, pub := range map[string]any{"rsa": &rsaKey.PublicKey, "p384": &p384.PublicKey} {
		if _, err := MarshalPublic(pub); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: MarshalPublic: %v", name, err)
		}
		der, _ := x509.MarshalPKIXPublicKey(pub)
		if _, err := ParsePublic(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: ParsePublic: %v", name, err)
		}
	}
	if _, err := Generate("rsa"); !errors.Is(err, ErrUnsupported) {
		t.Error("Generate(rsa)")
	}
	priv, _ := Generate(ECDSAP256)
	pubPEM, _ := MarshalPublic(priv.Public())
	for name, data := range map[string]string{
		"empty":        "",
		"not PEM":      "hello",
		"bad base64":   "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
		"bad DER":      "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"private type": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"two blocks":   string(pubPEM) + string(pubPEM),
	} {
		if _, err := ParsePublic([]byte(data)); !errors.Is(err, ErrPEM) {
			t.Errorf("ParsePublic(%s) = %v, want ErrPEM", name, err)
		}
	}
	if _, err := ParsePrivate(pubPEM, nil); !errors.Is(err, ErrPEM) {
		t.Errorf("ParsePrivate(public key) = %v", err)
	}
}
