package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixtureDir makes a directory holding every file a configuration may name, valid:
// root.json, ca.pem, client.pem and client.key (a pair), mqtt-password, s3-secret-key;
// and a few that are not: other.key (a key of another certificate), garbage.pem,
// empty, and a subdirectory sub/.
func fixtureDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	_, otherKey := selfSigned(t)
	files := map[string]string{
		"root.json":     `{"signed": {}, "signatures": []}`,
		"ca.pem":        certPEM,
		"client.pem":    certPEM,
		"client.key":    keyPEM,
		"other.key":     otherKey,
		"mqtt-password": "mqtt-pass-1\n",
		"s3-secret-key": "s3-secret-1\r\n",
		"garbage.pem":   "not a certificate\n",
		"empty":         "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func selfSigned(t testing.TB) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wasmfleet test"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(0, 0).Add(100 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// minimal is the smallest valid configuration, with {dir} for the fixture directory.
var minimal = []string{
	"device_id: pi-1",
	"mqtt: {brokers: ['tcp://127.0.0.1:1883']}",
	"s3: {endpoint: '127.0.0.1:9000', bucket: wasmfleet}",
	"trust_root: {dir}/root.json",
}

// conf is minimal with lines replaced: a line replaces the line of minimal with the same
// top-level key, or is added; "-key" removes that key's line.
func conf(lines ...string) string {
	out := append([]string(nil), minimal...)
	for _, l := range lines {
		key, _, _ := strings.Cut(l, ":")
		del := strings.HasPrefix(l, "-")
		key = strings.TrimPrefix(key, "-")
		replaced := false
		for i, m := range out {
			if strings.HasPrefix(m, key+":") {
				if del {
					out = append(out[:i], out[i+1:]...)
				} else {
					out[i] = l
				}
				replaced = true
				break
			}
		}
		if !replaced && !del {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// inDir puts the fixture directory in place of {dir}.
func inDir(text, dir string) []byte { return []byte(strings.ReplaceAll(text, "{dir}", dir)) }

// exampleIn is example.yaml with its /etc/wasmfleet/ files in dir.
func exampleIn(dir string) []byte {
	return []byte(strings.ReplaceAll(string(Example), "/etc/wasmfleet/", dir+"/"))
}
