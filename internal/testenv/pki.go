package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with one server certificate (127.0.0.1, ::1 and
// localhost) and one client certificate, all ECDSA P-256, written as PEM files. Keys are
// PKCS#8 ("PRIVATE KEY"), which Go, OpenSSL (Mosquitto) and versitygw all read.
type PKI struct {
	Dir string // where the files are (a t.TempDir)

	CAFile         string // CA certificate
	ServerCertFile string // server certificate for 127.0.0.1, ::1, localhost
	ServerKeyFile  string
	ClientCertFile string // client certificate (CN "wasmfleet-test-client") for mTLS
	ClientKeyFile  string

	t      testing.TB
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	client tls.Certificate
}

// NewPKI creates a CA, a server certificate and a client certificate in a new t.TempDir.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir(), t: t}
	caKey := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "wasmfleet test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: create CA certificate: %v", err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatalf("testenv: parse CA certificate: %v", err)
	}
	p.caKey = caKey
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.caCert)
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der)

	p.ServerCertFile, p.ServerKeyFile = p.issue("server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.ClientCertFile, p.ClientKeyFile = p.IssueClientCert("wasmfleet-test-client")
	if p.client, err = tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile); err != nil {
		t.Fatalf("testenv: load client certificate: %v", err)
	}
	return p
}

// IssueClientCert signs a client certificate (ExtKeyUsageClientAuth) with common name cn,
// written as cn.pem and cn-key.pem in p.Dir.
func (p *PKI) IssueClientCert(cn string) (certFile, keyFile string) {
	p.t.Helper()
	return p.issue(cn, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// CertPool holds the CA certificate only.
func (p *PKI) CertPool() *x509.CertPool { return p.pool.Clone() }

// TLSConfig is a client configuration that trusts the CA and presents no certificate.
func (p *PKI) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: p.CertPool(), MinVersion: tls.VersionTLS12}
}

// ClientTLSConfig is TLSConfig plus the client certificate, for mTLS.
func (p *PKI) ClientTLSConfig() *tls.Config {
	c := p.TLSConfig()
	c.Certificates = []tls.Certificate{p.client}
	return c
}

func (p *PKI) issue(name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t := p.t
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("testenv: create %s certificate: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal %s key: %v", name, err)
	}
	certFile = filepath.Join(p.Dir, name+".pem")
	keyFile = filepath.Join(p.Dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
}
