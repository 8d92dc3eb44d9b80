package controllers

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/certs"
	"github.com/edgepool/edgepool/internal/testutil"
)

// TestUpstreamCheckAgainstRealPostgres classifies real connection attempts against the suite's
// PostgreSQL; no message may contain the password.
func TestUpstreamCheckAgainstRealPostgres(t *testing.T) {
	pg := suite.pg
	good := upstreamCredentials{Username: pg.User, Password: pg.Password}
	closedPort := closedPort(t)
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

// TestUpstreamChecks runs the checks apart from any reconcile: a lookup never waits, the result
// arrives with a change notification, a re-check that finds the same does not notify, and a
// changed target is checked again at once.
func TestUpstreamChecks(t *testing.T) {
	pg := suite.pg
	var mu sync.Mutex
	var tries []upstreamTarget
	checker := newUpstreamChecker()
	checker.Timeout = 3 * time.Second
	checks := newUpstreamChecks(func(ctx context.Context, target upstreamTarget) upstreamResult {
		mu.Lock()
		tries = append(tries, target)
		mu.Unlock()
		return checker.try(ctx, target)
	})
	checks.RecheckUnreachable = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checks.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("checks: %v", err)
		}
	}()

	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	target := upstreamTarget{Host: pg.Host, Port: int32(pg.Port), Database: "postgres", SSLMode: "disable",
		Creds: upstreamCredentials{Username: pg.User, Password: "wrong"}}
	if res, checking := checks.Lookup(key, target); res != nil || !checking {
		t.Fatalf("first lookup: %+v checking=%v", res, checking)
	}
	changed := func() {
		t.Helper()
		select {
		case ev := <-checks.changed:
			if ev.Object.GetName() != "p" || ev.Object.GetNamespace() != "ns" {
				t.Fatalf("notified for %s/%s", ev.Object.GetNamespace(), ev.Object.GetName())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no change notification")
		}
	}
	changed()
	res, checking := checks.Lookup(key, target)
	if checking || res == nil || res.Reachable || res.Reason != ReasonAuthenticationFailed {
		t.Fatalf("after the first check: %+v checking=%v", res, checking)
	}
	// Re-checks (every 200ms here) find the same: no notification.
	before := checks.Checks()
	testutil.EventuallyNoError(t, "two re-checks", 10*time.Second, func() error {
		if n := checks.Checks(); n < before+2 {
			return fmt.Errorf("%d checks", n)
		}
		return nil
	})
	select {
	case ev := <-checks.changed:
		t.Fatalf("a re-check with the same result notified %v", ev.Object.GetName())
	default:
	}
	// New credentials: checked at once, with a notification.
	target.Creds.Password = pg.Password
	if res, checking := checks.Lookup(key, target); res != nil || !checking {
		t.Fatalf("retargeted lookup: %+v checking=%v", res, checking)
	}
	changed()
	if res, _ := checks.Lookup(key, target); res == nil || !res.Reachable {
		t.Fatalf("after the credentials change: %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tries) == 0 || tries[len(tries)-1].Creds.Password != pg.Password {
		t.Fatalf("the last attempt did not use the new credentials")
	}
}

// TestVerifyFullPoolBecomesReady: a pool with sslMode verify-full and its CA in a Secret becomes
// Ready against a PostgreSQL that serves TLS only (the check verifies the server certificate for
// the host name with the CA read from the Secret).
func TestVerifyFullPoolBecomesReady(t *testing.T) {
	ns := newNamespace(t)
	verifyFullPool(t, ns, "tls", suite.tlsPG.CACert)
	markDeploymentAvailable(t, ns, "tls-pooler")
	p := waitCondition(t, ns, "tls", poolingv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	if c := condition(p, poolingv1alpha1.ConditionUpstreamReachable); c.Reason != ReasonConnected {
		t.Fatalf("UpstreamReachable %+v", c)
	}
}

// closedPort is a loopback port nothing listens on: connections are refused.
func closedPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}
