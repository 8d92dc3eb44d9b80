package pooler_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// The relay loop (pool.relayLoop) carries busy clients between transactions and through them
// without a goroutine each; these tests check that it really does, and that clients it holds
// end cleanly. Every other test in the package runs with the loop as configured by default
// (and make test runs them once more with it off).

func withRelayLoop(c *config.Config) { c.Pool.RelayLoop = true }

func TestRelayLoopCarriesBusyClients(t *testing.T) {
	const clients, rounds = 20, 100
	h := startPooler(t, func(c *config.Config) {
		withRelayLoop(c)
		c.Pool.Size = 4
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			for j := range rounds {
				want := strconv.Itoa(i*rounds + j)
				res, err := c.Exec(ctx, "select "+want).ReadAll()
				if err != nil {
					errs <- err
					return
				}
				if got := string(res[0].Rows[0][0]); got != want {
					errs <- fmt.Errorf("client %d got %q, want %q", i, got, want)
					return
				}
				// Every few rounds a transaction over several round trips (BEGIN … COMMIT:
				// the loop holds the connection while it waits for the client).
				if j%10 == 0 {
					if _, err := c.Exec(ctx, "begin; select 1").ReadAll(); err != nil {
						errs <- err
						return
					}
					if _, err := c.Exec(ctx, "select 2").ReadAll(); err != nil {
						errs <- err
						return
					}
					if _, err := c.Exec(ctx, "commit").ReadAll(); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := h.srv.Proxy().Stats()
	t.Logf("%d transactions: %d entries into the loop, %d hand-offs", clients*rounds*13/10, st.RelayLoopEntries, st.RelayLoopHandoffs)
	if st.RelayLoopEntries < clients {
		t.Fatalf("%d sessions entered the relay loop, want all %d", st.RelayLoopEntries, clients)
	}
	// A hand-off per session's end, and per connection's first use by the relay (it syncs on a
	// goroutine); a hand-off per transaction would mean the loop does not carry them.
	if limit := int64(2*clients + 4*4); st.RelayLoopHandoffs > limit {
		t.Fatalf("%d hand-offs to goroutines for %d clients, want at most %d", st.RelayLoopHandoffs, clients, limit)
	}
}

// A client that vanishes while the loop holds it (idle, or inside a transaction) ends its
// session once: its connection goes back to the pool and nothing keeps bouncing between the
// loop and a goroutine.
func TestRelayLoopClientsThatVanish(t *testing.T) {
	const clients = 10
	h := startPooler(t, func(c *config.Config) {
		withRelayLoop(c)
		c.Pool.Size = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range clients {
		c := h.connect(ctx, t)
		exec1(ctx, t, c, "select 1")
		if i%2 == 1 {
			exec1(ctx, t, c, "begin")
			exec1(ctx, t, c, "select 2")
		}
		testutil.Eventually(t, "the session in the loop", 5*time.Second, func() bool {
			return h.srv.Proxy().Stats().RelayLoopEntries >= int64(i+1)
		})
		_ = c.Conn().Close() // no Terminate: the socket just closes
	}
	testutil.Eventually(t, "every session ended", 10*time.Second, func() bool {
		return h.srv.Proxy().Stats().Clients == 0
	})
	testutil.Eventually(t, "connections back in the pool", 10*time.Second, func() bool {
		return h.srv.Pool().Stats().Active == 0
	})
	before := h.srv.Proxy().Stats().RelayLoopHandoffs
	if before > 2*clients {
		t.Fatalf("%d hand-offs for %d vanished clients: sessions bounce between the loop and goroutines", before, clients)
	}
	// Still nothing moving afterwards.
	next := h.connect(ctx, t)
	exec1(ctx, t, next, "select 1")
	if got := exec1(ctx, t, next, "select count(*) from pg_stat_activity where state = 'idle in transaction'"); got != "0" {
		t.Fatalf("%s upstream connections left inside a vanished client's transaction", got)
	}
}
