package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"testing"
)

// FuzzParsePublic feeds the public-key parser (trust files, `wasmfleet` key files) anything:
// it must never panic, and whatever it accepts is a key of an allowed kind that re-encodes
// to a PEM that parses again.
func FuzzParsePublic(f *testing.F) {
	for _, algo := range []string{ECDSAP256, Ed25519} {
		priv, err := Generate(algo)
		if err != nil {
			f.Fatal(err)
		}
		pem, err := MarshalPublic(priv.Public())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pem)
		f.Add(append(pem, pem...))
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("not a key"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublic(data)
		if err != nil {
			return
		}
		switch pub.(type) {
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			t.Fatalf("accepted a %T", pub)
		}
		out, err := MarshalPublic(pub)
		if err != nil {
			t.Fatalf("an accepted key does not encode: %v", err)
		}
		if _, err := ParsePublic(out); err != nil {
			t.Fatalf("a re-encoded key does not parse: %v", err)
		}
	})
}

// FuzzParsePrivate feeds the encrypted private-key parser anything: it must never panic.
func FuzzParsePrivate(f *testing.F) {
	priv, err := Generate(ECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	pem, err := MarshalPrivate(priv, []byte("pw"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem, []byte("pw"))
	f.Add(pem, []byte("wrong"))
	f.Add([]byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"), []byte(""))
	f.Fuzz(func(t *testing.T, data, password []byte) {
		if k, err := ParsePrivate(data, password); err == nil && k == nil {
			t.Fatal("no key and no error")
		}
	})
}
