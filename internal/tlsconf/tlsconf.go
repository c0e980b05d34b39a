// Package tlsconf builds the TLS client settings that the agent and the fleet tools share:
// TLS 1.2 or later, the system's CAs plus those of a PEM file, and an optional client
// certificate for mTLS.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool returns the system's certificate pool with the certificates of the PEM file caFile
// added (the system's alone when caFile is "").
func CAPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// Client returns a client configuration trusting caFile (and the system's CAs) and, when
// certFile is set, presenting that certificate with keyFile.
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := CAPool(caFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
