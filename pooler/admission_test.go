package pooler_test

import (
	"context"
	"net"
	"strings"
	"sync"
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

// TestConcurrentLoginsStayWithinMaxClients: limits proved — pool.maxClientConnections under a
// burst of valid logins larger than it. 40 clients connect at once against 8 places: some get
// in, at most 8, and every other one is refused with 53300. None is pushed out in the middle of
// its login: a login that is answering the auth exchange is never pushed out, and a newcomer
// that finds no other waits for a place and is refused when none comes free (evicting the
// oldest login instead let a burst push out every login before it finished, and nobody got
// in). The only other failure allowed is a connection closed before the pooler had received
// anything from it (its startup packet trailed its accept): the silent-first rule evicts
// those, as it does a flood of silent connections.
func TestConcurrentLoginsStayWithinMaxClients(t *testing.T) {
	const maxClients, burst = 8, 40
	h := startPooler(t, func(c *config.Config) {
		c.Pool.MaxClientConnections = maxClients
		c.Pool.Size = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		conn *pgconn.PgConn
		err  error
	}
	results := make(chan result, burst)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			<-start
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			results <- result{c, err}
		})
	}
	close(start)
	wg.Wait() // every client has tried; the ones that got in hold their connection until the end
	close(results)
	var in, refused, closedSilent int
	for r := range results {
		switch {
		case r.err == nil:
			in++
			t.Cleanup(func() { r.conn.Close(context.Background()) })
		case pgCode(r.err) == "53300":
			refused++
		case ctx.Err() == nil && strings.Contains(r.err.Error(), "failed to receive message"):
			closedSilent++ // closed before the pooler answered anything: evicted (counted below)
		default:
			t.Errorf("a client that did not get in: %v, want 53300", r.err)
		}
	}
	t.Logf("%d of %d clients logged in, %d refused with 53300, %d closed before an answer", in, burst, refused, closedSilent)
	if in < 1 || in > maxClients {
		t.Fatalf("%d clients logged in, want 1 to %d", in, maxClients)
	}
	testutil.Eventually(t, "the pooler sees the clients that got in", 5*time.Second, func() bool {
		return metricValue(t, h, `edgepool_clients{state="idle"}`) == float64(in)
	})
	if n := metricValue(t, h, "edgepool_client_connections_refused_total"); n < float64(refused) {
		t.Fatalf("%v refusals counted, %d clients refused", n, refused)
	}
	if n := metricValue(t, h, "edgepool_client_logins_evicted_total"); n < float64(closedSilent) {
		t.Fatalf("%v evictions counted, %d clients closed before an answer", n, closedSilent)
	}
}
