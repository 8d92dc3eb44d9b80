package controllers

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
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
		{"require without server TLS", upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "require", Creds: good}, false, "", ""},
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
