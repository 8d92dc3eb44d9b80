package controllers

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/certs"
)

// TestUpstreamCheckAgainstRealPostgres classifies real connection attempts against the suite's
// PostgreSQL; no message may contain the password.
func TestUpstreamCheckAgainstRealPostgres(t *testing.T) {
	pg := suite.pg
	good := upstreamCredentials{Username: pg.User, Password: pg.Password}
	closedPort := func() int32 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return int32(l.Addr().(*net.TCPAddr).Port)
	}()
	tests := []struct {
		name       string
		target     upstreamTarget
		wantOK     bool
		wantReason string
		wantInMsg  string
	}{
		{"reachable", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "disable", Creds: good}, true, ReasonConnected, "connected"},
		{"prefer falls back to plaintext", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "prefer", Creds: good}, true, ReasonConnected, "connected"},
		{"wrong password", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "disable",
			Creds: upstreamCredentials{Username: pg.User, Password: "wrong-secret-123"}}, false, ReasonAuthenticationFailed, "authentication failed"},
		{"unknown database", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "nope", SSLMode: "disable", Creds: good}, false, ReasonDatabaseNotFound, "nope"},
		{"nothing listening", upstreamTarget{Host: "127.0.0.1", Port: closedPort, Database: "postgres", SSLMode: "disable", Creds: good}, false, ReasonUnreachable, "cannot reach"},
		{"require without server TLS", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "require", Creds: good}, false, ReasonTLSFailed, "does not offer TLS"},
	}
	checker := newUpstreamChecker()
	checker.Timeout = 3 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checker.try(context.Background(), tt.target)
			if res.Reachable != tt.wantOK || (tt.wantReason != "" && res.Reason != tt.wantReason) || !strings.Contains(res.Message, tt.wantInMsg) {
				t.Fatalf("got %+v", res)
			}
			if strings.Contains(res.Message, tt.target.Creds.Password) {
				t.Fatalf("message contains the password: %q", res.Message)
			}
		})
	}
}

// TestUpstreamCheckTLS: the reachability check against a TLS-only PostgreSQL (certificate for
// "localhost") in each verifying sslMode, with its CA, another CA and a wrong host name.
func TestUpstreamCheckTLS(t *testing.T) {
	pg := suite.tlsPG
	otherCA, _, err := certs.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds := upstreamCredentials{Username: pg.User, Password: pg.Password}
	target := func(host, mode string, ca []byte) upstreamTarget {
		return upstreamTarget{Host: host, Port: int32(pg.Port), Database: "postgres", SSLMode: mode, CA: ca, Creds: creds}
	}
	tests := []struct {
		name       string
		target     upstreamTarget
		wantReason string
	}{
		{"require", target("localhost", "require", nil), ReasonConnected},
		{"require with the CA", target("localhost", "require", pg.CACert), ReasonConnected},
		{"verify-ca", target("127.0.0.1", "verify-ca", pg.CACert), ReasonConnected},
		{"verify-full", target("localhost", "verify-full", pg.CACert), ReasonConnected},
		{"require with another CA", target("localhost", "require", otherCA), ReasonTLSFailed},
		{"verify-ca with another CA", target("localhost", "verify-ca", otherCA), ReasonTLSFailed},
		{"verify-full with another CA", target("localhost", "verify-full", otherCA), ReasonTLSFailed},
		{"verify-full with the wrong host name", target("127.0.0.1", "verify-full", pg.CACert), ReasonTLSFailed},
		{"garbage CA", target("localhost", "verify-full", []byte("not a certificate")), ReasonTLSFailed},
	}
	checker := newUpstreamChecker()
	checker.Timeout = 3 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checker.try(context.Background(), tt.target)
			if res.Reason != tt.wantReason || res.Reachable != (tt.wantReason == ReasonConnected) {
				t.Fatalf("got %+v, want %s", res, tt.wantReason)
			}
			if strings.Contains(res.Message, pg.Password) {
				t.Fatalf("message contains the password: %q", res.Message)
			}
		})
	}
}

func TestUpstreamCheckerCaches(t *testing.T) {
	pg := suite.pg
	checker := newUpstreamChecker()
	target := upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "disable",
		Creds: upstreamCredentials{Username: pg.User, Password: "wrong"}}
	now := time.Now()
	first, stale := checker.Check(context.Background(), "ns/p", target, now)
	if first.Reachable || !stale.Equal(now.Add(checker.RecheckUnreachable)) {
		t.Fatalf("first %+v stale %v", first, stale)
	}
	// Within the TTL the cached result is returned; a credentials change re-checks at once.
	if again, _ := checker.Check(context.Background(), "ns/p", target, now.Add(time.Second)); again != first {
		t.Fatalf("not cached: %+v", again)
	}
	target.Creds.Password = pg.Password
	if fixed, _ := checker.Check(context.Background(), "ns/p", target, now.Add(2*time.Second)); !fixed.Reachable {
		t.Fatalf("credentials change not re-checked: %+v", fixed)
	}
}
