package certs

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"
)

func TestEnsureIssuesReusesAndRenews(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	names := []string{"shop-pooler", "shop-pooler.apps.svc"}

	b, renewAt, reissued, err := Ensure(Bundle{}, "apps/shop", names, now)
	if err != nil || !reissued {
		t.Fatalf("first Ensure: reissued=%v err=%v", reissued, err)
	}
	if want := now.Add(ServerValidity - ServerRenewBefore); !renewAt.Equal(want) {
		t.Fatalf("renewAt = %v, want %v", renewAt, want)
	}
	ca, _ := ParseCert(b.CACert)
	server, _ := ParseCert(b.ServerCert)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "shop-pooler.apps.svc", Roots: pool, CurrentTime: now}); err != nil {
		t.Fatalf("server cert does not verify: %v", err)
	}

	tests := []struct {
		name        string
		at          time.Time
		names       []string
		wantReissue bool
		wantSameCA  bool
	}{
		{"unchanged a day later", now.Add(24 * time.Hour), names, false, true},
		{"new SAN reissues server cert only", now.Add(time.Hour), append(names, "db.example.com"), true, true},
		{"near server expiry renews server cert", now.Add(ServerValidity - ServerRenewBefore + time.Hour), names, true, true},
		{"near CA expiry renews everything", now.Add(CAValidity - CARenewBefore + time.Hour), names, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, reissued, err := Ensure(b, "apps/shop", tt.names, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if reissued != tt.wantReissue {
				t.Fatalf("reissued = %v, want %v", reissued, tt.wantReissue)
			}
			if same := bytes.Equal(got.CACert, b.CACert); same != tt.wantSameCA {
				t.Fatalf("same CA = %v, want %v", same, tt.wantSameCA)
			}
			if !tt.wantReissue && !bytes.Equal(got.ServerCert, b.ServerCert) {
				t.Fatal("server certificate changed without reissue")
			}
		})
	}
}

func TestEnsureReplacesGarbage(t *testing.T) {
	now := time.Now()
	b, _, reissued, err := Ensure(Bundle{CACert: []byte("junk"), ServerKey: []byte("junk")}, "x", []string{"a"}, now)
	if err != nil || !reissued {
		t.Fatalf("reissued=%v err=%v", reissued, err)
	}
	if _, err := ParseCert(b.ServerCert); err != nil {
		t.Fatal(err)
	}
}

func TestServerCertIPAddressSANs(t *testing.T) {
	now := time.Now()
	names := []string{"localhost", "127.0.0.1"}
	b, _, _, err := Ensure(Bundle{}, "test", names, now)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := ParseCert(b.CACert)
	server, _ := ParseCert(b.ServerCert)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, host := range names {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "127.0.0.2", Roots: roots}); err == nil {
		t.Error("verified for an IP address it was not issued for")
	}
	if _, _, reissued, err := Ensure(b, "test", names, now.Add(time.Hour)); err != nil || reissued {
		t.Fatalf("unchanged names with an IP reissued=%v err=%v", reissued, err)
	}
}
