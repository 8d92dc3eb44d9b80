package localenv

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

func TestLocalURLChangesOnlyHostAndPort(t *testing.T) {
	in := "postgres://default:ep_k%2Fey@shop-pooler.apps.svc:5432/shop?sslmode=require"
	got, err := LocalURL(in, "127.0.0.1:21000")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://default:ep_k%2Fey@127.0.0.1:21000/shop?sslmode=require"; got != want {
		t.Errorf("LocalURL = %s, want %s", got, want)
	}
}

func TestVerifyFullDSNKeepsTheCertificateName(t *testing.T) {
	got, err := VerifyFullDSN("postgres://default:k@shop-pooler.apps.svc:5432/shop?sslmode=require", "127.0.0.1:21000", "/tmp/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	q := u.Query()
	if u.Host != "shop-pooler.apps.svc:21000" || q.Get("hostaddr") != "127.0.0.1" || q.Get("sslmode") != "verify-full" ||
		q.Get("sslrootcert") != "/tmp/ca.crt" {
		t.Errorf("VerifyFullDSN = %s", got)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact("postgres://u:secret@h:1/db"); got != "postgres://u:…@h:1/db" {
		t.Errorf("Redact = %s", got)
	}
}

func TestReadManifestsSecretsFirstSkippingKustomization(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a_pool.yaml", "apiVersion: pooling.edgepool.dev/v1alpha1\nkind: ConnectionPool\nmetadata: {name: shop}\n---\n# empty\n")
	write("b_secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-db}\nstringData: {password: x}\n")
	write("kustomization.yaml", "resources: [a_pool.yaml]\n")
	objs, err := ReadManifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "Secret" || objs[1].GetKind() != "ConnectionPool" {
		t.Fatalf("objects %v", objs)
	}
}
