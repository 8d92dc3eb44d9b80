package pooler_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

// eachClient runs client(0 … n-1) at once and fails the test with the first error.
func eachClient(t *testing.T, n int, client func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := client(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestRelayLoopCarriesBusyClients(t *testing.T) {
	const clients, rounds = 20, 100
	h := startPooler(t, func(c *config.Config) {
		withRelayLoop(c)
		c.Pool.Size = 4
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eachClient(t, clients, func(i int) error {
		c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		for j := range rounds {
			want := strconv.Itoa(i*rounds + j)
			res, err := c.Exec(ctx, "select "+want).ReadAll()
			if err != nil {
				return err
			}
			if got := string(res[0].Rows[0][0]); got != want {
				return fmt.Errorf("client %d got %q, want %q", i, got, want)
			}
			// Every few rounds a transaction over several round trips (BEGIN … COMMIT: the
			// loop holds the connection while it waits for the client).
			if j%10 == 0 {
				for _, q := range []string{"begin; select 1", "select 2", "commit"} {
					if _, err := c.Exec(ctx, q).ReadAll(); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
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
	// The upstream sockets leave Go's netpoller when the loop first takes them and stay out
	// across borrows: a move per hand-off at most, not one per transaction.
	ps := h.srv.Pool().Stats()
	t.Logf("upstream sockets: %d detached, %d attached again", ps.SocketsDetached, ps.SocketsAttached)
	if ps.SocketsDetached == 0 {
		t.Fatal("the relay loop took no upstream socket out of Go's netpoller")
	}
	if limit := st.RelayLoopHandoffs + 4; ps.SocketsDetached > limit {
		t.Fatalf("%d upstream sockets detached for %d hand-offs, want at most %d", ps.SocketsDetached, st.RelayLoopHandoffs, limit)
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

// TLS clients ride the loop too: crypto/tls stays the session's, the socket under it moves. A
// result far larger than the socket takes (the loop hands the rest, already encrypted, to a
// goroutine) arrives whole, and a pipelined batch after it still lines up.
func TestRelayLoopCarriesTLSClients(t *testing.T) {
	tf := testutil.ServerTLS(t)
	h := startPooler(t, func(c *config.Config) {
		withRelayLoop(c)
		c.TLS = &config.TLS{CertFile: tf.CertFile, KeyFile: tf.KeyFile}
		c.Pool.Size = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const clients = 6
	eachClient(t, clients, func(i int) error {
		c, err := pgconn.Connect(ctx, strings.Replace(h.dsn(h.key, ""), "sslmode=disable", "sslmode=require", 1))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		for j := range 50 {
			want := strconv.Itoa(i*1000 + j)
			res, err := c.Exec(ctx, "select "+want).ReadAll()
			if err != nil {
				return err
			}
			if got := string(res[0].Rows[0][0]); got != want {
				return fmt.Errorf("client %d got %q, want %q", i, got, want)
			}
		}
		res, err := c.Exec(ctx, "select repeat('ab', 2000000)").ReadAll()
		if err != nil {
			return err
		}
		if got := len(res[0].Rows[0][0]); got != 4000000 {
			return fmt.Errorf("client %d: large result of %d bytes, want 4000000", i, got)
		}
		b := &pgconn.Batch{}
		for k := range 20 {
			b.ExecParams("select $1::int * 2", [][]byte{[]byte(strconv.Itoa(k))}, nil, nil, nil)
		}
		rs, err := c.ExecBatch(ctx, b).ReadAll()
		if err != nil {
			return err
		}
		for k, r := range rs {
			if got, want := string(r.Rows[0][0]), strconv.Itoa(2*k); got != want {
				return fmt.Errorf("client %d batch %d: %q, want %q", i, k, got, want)
			}
		}
		return nil
	})
	st := h.srv.Proxy().Stats()
	t.Logf("%d TLS clients: %d entries into the loop, %d hand-offs", clients, st.RelayLoopEntries, st.RelayLoopHandoffs)
	if st.RelayLoopEntries < clients {
		t.Fatalf("%d TLS sessions entered the relay loop, want all %d", st.RelayLoopEntries, clients)
	}
}

// A client that stops reading while the loop relays its result: what its socket does not take
// stays with the session (for TLS: already encrypted) and a goroutine writes it once the client
// reads again; nothing is lost, reordered or encrypted twice.
func TestRelayLoopClientThatStopsReading(t *testing.T) {
	tf := testutil.ServerTLS(t)
	h := startPooler(t, func(c *config.Config) {
		withRelayLoop(c)
		c.TLS = &config.TLS{CertFile: tf.CertFile, KeyFile: tf.KeyFile}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rows, width = 800, 10000 // 8 MB: far more than both socket buffers hold
	query := fmt.Sprintf("select i || ':' || repeat(chr(97 + i %% 26), %d) from generate_series(1, %d) i", width, rows)
	for _, mode := range []string{"disable", "require"} {
		t.Run("sslmode="+mode, func(t *testing.T) {
			c := rawConnect(ctx, t, strings.Replace(h.dsn(h.key, ""), "sslmode=disable", "sslmode="+mode, 1))
			// Round trips until the session is in the loop (a connection's first use by the
			// relay is synced on a goroutine, which runs the next transaction itself).
			inLoop := func() bool {
				st := h.srv.Proxy().Stats()
				return st.RelayLoopEntries-st.RelayLoopHandoffs == 1
			}
			for i := 0; !inLoop(); i++ {
				if i == 10 {
					t.Fatal("the session never stayed in the relay loop")
				}
				if err := c.send(msg('Q', cstr("select 1"))); err != nil {
					t.Fatal(err)
				}
				if _, pgErr, err := c.untilReady(); err != nil || pgErr != "" {
					t.Fatalf("select 1: %q, %v", pgErr, err)
				}
			}
			before := h.srv.Proxy().Stats().RelayLoopHandoffs
			if err := c.send(msg('Q', cstr(query))); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "the loop hands the stalled client to a goroutine", 20*time.Second, func() bool {
				return h.srv.Proxy().Stats().RelayLoopHandoffs > before
			})
			values, pgErr, err := c.untilReady()
			if err != nil || pgErr != "" {
				t.Fatalf("big result: %q, %v", pgErr, err)
			}
			if len(values) != rows {
				t.Fatalf("%d rows, want %d", len(values), rows)
			}
			for i, v := range values {
				n := i + 1
				want := strconv.Itoa(n) + ":" + strings.Repeat(string(rune('a'+n%26)), width)
				if v != want {
					t.Fatalf("row %d: %d bytes starting %.20q, want %d bytes starting %.20q", n, len(v), v, len(want), want)
				}
			}
			if err := c.send(msg('Q', cstr("select 42"))); err != nil {
				t.Fatal(err)
			}
			if values, _, err := c.untilReady(); err != nil || len(values) != 1 || values[0] != "42" {
				t.Fatalf("after the big result: %v, %v", values, err)
			}
		})
	}
}
