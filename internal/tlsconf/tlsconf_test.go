package tlsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

func TestClient(t *testing.T) {
	pki := testenv.NewPKI(t)
	c, err := Client(pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)
	if err != nil || len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Fatalf("%+v, %v", c, err)
	}
	if _, err := Client("", "", ""); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := CAPool(bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad CA file: %v", err)
	}
	if _, err := CAPool(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("missing CA file accepted")
	}
	if _, err := Client(pki.CAFile, pki.ClientCertFile, pki.CAFile); err == nil {
		t.Fatal("a certificate with the wrong key accepted")
	}
}
