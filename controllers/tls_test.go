package controllers

import (
	"bytes"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgepool/edgepool/internal/certs"
)

func TestServerDNSNames(t *testing.T) {
	p := samplePool()
	want := []string{"shop-pooler", "shop-pooler.apps", "shop-pooler.apps.svc", "shop-pooler.apps.svc.cluster.local"}
	if got := serverDNSNames(p); !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	p.Spec.Service.ExternalHost = "db.example.com"
	if got := serverDNSNames(p); got[len(got)-1] != "db.example.com" {
		t.Fatalf("externalHost missing: %v", got)
	}
}

func TestTLSSecretRoundTrip(t *testing.T) {
	p := samplePool()
	b, _, _, err := certs.Ensure(certs.Bundle{}, "apps/shop", serverDNSNames(p), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := tlsSecret(p, b)
	if s.Name != "shop-tls" || s.Type != corev1.SecretTypeTLS || len(s.Data[corev1.TLSCertKey]) == 0 {
		t.Fatalf("secret %+v", s.ObjectMeta)
	}
	// Reading the Secret back and ensuring again reuses everything: no rollout from renewals.
	again, _, reissued, err := certs.Ensure(bundleFromSecret(s), "apps/shop", serverDNSNames(p), time.Now())
	if err != nil || reissued || !bytes.Equal(again.ServerCert, b.ServerCert) {
		t.Fatalf("reissued=%v err=%v", reissued, err)
	}
}
