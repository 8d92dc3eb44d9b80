package pooler_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// TestLoginsInProgressAreCapped: limits proved — pool.maxAuthenticatingConnections and
// pool.maxClientConnections counting logins in progress. 200 silent connections never hold
// more than the pre-auth cap (the oldest make room for newer ones), a valid client still logs
// in at once, and when logged-in clients fill maxClientConnections a new connection is refused
// with 53300 without waiting for the auth timeout.
func TestLoginsInProgressAreCapped(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Pool.MaxClientConnections = 40
		c.Pool.MaxAuthenticatingConnections = 16
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var silent []net.Conn
	t.Cleanup(func() {
		for _, c := range silent {
			c.Close()
		}
	})
	for range 200 {
		c, err := net.Dial("tcp", h.srv.PostgresAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	testutil.Eventually(t, "200 connections accepted", 10*time.Second, func() bool {
		return metricValue(t, h, "edgepool_client_connections_total") >= 200
	})
	// Silent newcomers at the cap get speakGrace (100 ms) to speak before they join and push
	// out the oldest silent one.
	testutil.Eventually(t, "184 silent logins evicted", 5*time.Second, func() bool {
		return metricValue(t, h, "edgepool_client_logins_evicted_total") >= 184
	})
	if n := metricValue(t, h, `edgepool_clients{state="login"}`); n > 16 {
		t.Fatalf("%v connections logging in, cap 16", n)
	}
	start := time.Now()
	c := h.connect(ctx, t)
	if got := exec1(ctx, t, c, "select 1"); got != "1" || time.Since(start) > time.Second {
		t.Fatalf("valid client: %q after %v", got, time.Since(start))
	}

	// Fill maxClientConnections with logged-in clients: the next is refused at once.
	for range 39 {
		h.connect(ctx, t)
	}
	start = time.Now()
	_, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
	if pgCode(err) != "53300" || time.Since(start) > time.Second {
		t.Fatalf("connection beyond maxClientConnections: %v after %v, want 53300 at once", err, time.Since(start))
	}
	if n := metricValue(t, h, "edgepool_client_connections_refused_total"); n < 1 {
		t.Fatal("refusal not counted")
	}
}
