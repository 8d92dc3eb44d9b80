package testutil

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/certs"
)

// TLSFiles are a server certificate and its key on disk, and the CA that signed them.
type TLSFiles struct {
	CertFile, KeyFile string
	CAFile            string         // the CA certificate (PEM), for libpq's sslrootcert
	Roots             *x509.CertPool // trusts the CA, for Go clients
}

// ServerTLS issues a CA and a server certificate for hosts ("localhost" and "127.0.0.1" when
// none are given) with internal/certs, as the operator issues a pool's, and writes them to a
// temp dir of the test.
func ServerTLS(t testing.TB, hosts ...string) TLSFiles {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	bundle, _, _, err := certs.Ensure(certs.Bundle{}, "test", hosts, time.Now())
	if err != nil {
		t.Fatalf("issue test certificates: %v", err)
	}
	dir := t.TempDir()
	f := TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		CAFile: filepath.Join(dir, "ca.crt"), Roots: x509.NewCertPool()}
	for path, data := range map[string][]byte{f.CertFile: bundle.ServerCert, f.KeyFile: bundle.ServerKey, f.CAFile: bundle.CACert} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !f.Roots.AppendCertsFromPEM(bundle.CACert) {
		t.Fatal("the issued CA is not PEM")
	}
	return f
}
