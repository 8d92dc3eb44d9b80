package pooler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// The auth timeout bounds a client's whole startup, including the wait for the upstream's
// parameters that the first clients of a fresh pooler need. With the pool paused (or the
// upstream out of reach) those clients used to wait the query-wait timeout each, one after
// the other, so the n-th waited n times it.
func TestAuthTimeoutBoundsStartupWaitForUpstream(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Paused = true
		c.Pool.AuthTimeout = config.Duration{Duration: time.Second}
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 5 * time.Second}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	const clients = 3
	var wg sync.WaitGroup
	took := make([]time.Duration, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			if err == nil {
				c.Close(context.Background())
			}
			took[i], errs[i] = time.Since(start), err
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] == nil {
			t.Errorf("client %d: connected through a paused pool before the upstream was ever reached", i)
		}
		if took[i] > 3*time.Second {
			t.Errorf("client %d: startup took %v with a 1s auth timeout (err %v)", i, took[i].Round(time.Millisecond), errs[i])
		}
	}
	// Once the pool runs again, clients get in.
	cfg := *h.cfg
	cfg.Paused = false
	h.writeConfig(&cfg)
	testutil.Eventually(t, "unpause", 5*time.Second, func() bool { return !h.srv.Pool().Stats().Paused })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	c := h.connect(ctx2, t)
	if got := exec1(ctx2, t, c, "select 6 * 7"); got != "42" {
		t.Fatalf("select = %q", got)
	}
}
