package pooler_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/pooler/config"
)

// Pipelined clients send their next messages before reading the previous results. In
// transaction pooling the upstream connection goes back to the pool after every transaction,
// so the next pipelined message may meet a connection that was just handed on: every result
// must still arrive, in order, with no error (each transaction on whichever connection).

func smallPool(size int) func(*config.Config) {
	return func(cfg *config.Config) {
		cfg.Pool.Size = size
		cfg.Pool.QueryWaitTimeout = config.Duration{Duration: 30 * time.Second}
	}
}

// pipelineClients runs fn on 12 concurrent clients of a pooler with 1, then 2 upstream
// connections (a subtest each).
func pipelineClients(t *testing.T, fn func(ctx context.Context, h *harness, id int) error) {
	t.Helper()
	for _, size := range []int{1, 2} {
		t.Run("pool"+strconv.Itoa(size), func(t *testing.T) {
			h := startPooler(t, smallPool(size))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			runClients(t, 12, func(id int) error { return fn(ctx, h, id) })
		})
	}
}

// runClients runs fn on n concurrent clients and reports every client's error.
func runClients(t *testing.T, n int, fn func(id int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for id := range n {
		wg.Go(func() {
			if err := fn(id); err != nil {
				errs <- fmt.Errorf("client %d: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPipelinePgxBatch(t *testing.T) {
	pipelineClients(t, func(ctx context.Context, h *harness, id int) error {
		conn, err := pgx.Connect(ctx, h.dsn(h.key, ""))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for round := range 5 {
			// Several transactions (implicit and explicit) in one batch: pgx sends
			// every statement and a single Sync, then reads.
			b := &pgx.Batch{}
			want := []int{}
			for i := range 4 {
				v := id*1000 + round*100 + i
				if i%2 == 0 {
					b.Queue("begin")
					b.Queue("select $1::int + 0", v)
					b.Queue("commit")
				} else {
					b.Queue("select $1::int", v)
				}
				want = append(want, v)
			}
			br := conn.SendBatch(ctx, b)
			for i := range 4 {
				if i%2 == 0 {
					if _, err := br.Exec(); err != nil {
						return fmt.Errorf("round %d begin %d: %w", round, i, err)
					}
				}
				var got int
				if err := br.QueryRow().Scan(&got); err != nil {
					return fmt.Errorf("round %d select %d: %w", round, i, err)
				}
				if got != want[i] {
					return fmt.Errorf("round %d select %d: got %d, want %d", round, i, got, want[i])
				}
				if i%2 == 0 {
					if _, err := br.Exec(); err != nil {
						return fmt.Errorf("round %d commit %d: %w", round, i, err)
					}
				}
			}
			if err := br.Close(); err != nil {
				return fmt.Errorf("round %d close: %w", round, err)
			}
			// A plain query in between: the session must still be usable.
			var n int
			if err := conn.QueryRow(ctx, "select $1::int", round).Scan(&n); err != nil || n != round {
				return fmt.Errorf("round %d after batch: %d, %w", round, n, err)
			}
		}
		return nil
	})
}

func TestPipelinePgconnSyncs(t *testing.T) {
	pipelineClients(t, func(ctx context.Context, h *harness, id int) error {
		c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		for round := range 5 {
			p := c.StartPipeline(ctx)
			const syncs = 6
			for i := range syncs {
				// Each Sync ends a transaction: the connection may be released
				// between any two of them while the rest are already sent.
				p.SendQueryParams("select $1::text", [][]byte{[]byte(strconv.Itoa(id*1000 + round*10 + i))}, nil, nil, nil)
				p.SendQueryParams("select $1::text || 'x'", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil, nil)
				p.SendPipelineSync()
			}
			if err := p.Flush(); err != nil {
				return fmt.Errorf("round %d flush: %w", round, err)
			}
			for i := range syncs {
				wants := []string{strconv.Itoa(id*1000 + round*10 + i), strconv.Itoa(i) + "x"}
				for _, want := range wants {
					res, err := p.GetResults()
					if err != nil {
						return fmt.Errorf("round %d sync %d: %w", round, i, err)
					}
					rr, ok := res.(*pgconn.ResultReader)
					if !ok {
						return fmt.Errorf("round %d sync %d: got %T, want a result", round, i, res)
					}
					r := rr.Read()
					if r.Err != nil {
						return fmt.Errorf("round %d sync %d: %w", round, i, r.Err)
					}
					if len(r.Rows) != 1 || string(r.Rows[0][0]) != want {
						return fmt.Errorf("round %d sync %d: got %q, want %q", round, i, r.Rows, want)
					}
				}
				res, err := p.GetResults()
				if err != nil {
					return fmt.Errorf("round %d sync %d: %w", round, i, err)
				}
				if _, ok := res.(*pgconn.PipelineSync); !ok {
					return fmt.Errorf("round %d sync %d: got %T, want the sync", round, i, res)
				}
			}
			if err := p.Close(); err != nil {
				return fmt.Errorf("round %d close: %w", round, err)
			}
		}
		return nil
	})
}

func TestPipelineSimpleQueriesBackToBack(t *testing.T) {
	pipelineClients(t, func(ctx context.Context, h *harness, id int) error {
		c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
		if err != nil {
			return err
		}
		hj, err := c.Hijack()
		if err != nil {
			return err
		}
		defer hj.Conn.Close()
		_ = hj.Conn.SetDeadline(time.Now().Add(50 * time.Second))
		fe := hj.Frontend
		for round := range 8 {
			// Written back to back, some one at a time (so earlier transactions may end
			// while later queries are still arriving), some in one write.
			const n = 6
			for i := range n {
				q := fmt.Sprintf("select %d", id*1000+round*10+i)
				if i%3 == 1 {
					q = fmt.Sprintf("begin; select %d; commit", id*1000+round*10+i)
				}
				fe.Send(&pgproto3.Query{String: q})
				if i%2 == 0 {
					if err := fe.Flush(); err != nil {
						return err
					}
				}
			}
			if err := fe.Flush(); err != nil {
				return err
			}
			for i := range n {
				want := strconv.Itoa(id*1000 + round*10 + i)
				var got []string
			read:
				for {
					msg, err := fe.Receive()
					if err != nil {
						return fmt.Errorf("round %d query %d: %w", round, i, err)
					}
					switch m := msg.(type) {
					case *pgproto3.DataRow:
						got = append(got, string(m.Values[0]))
					case *pgproto3.ErrorResponse:
						return fmt.Errorf("round %d query %d: %s %s", round, i, m.Code, m.Message)
					case *pgproto3.ReadyForQuery:
						if m.TxStatus != 'I' {
							return fmt.Errorf("round %d query %d: status %c", round, i, m.TxStatus)
						}
						break read
					}
				}
				if len(got) != 1 || got[0] != want {
					return fmt.Errorf("round %d query %d: got %q, want %q", round, i, got, want)
				}
			}
		}
		fe.Send(&pgproto3.Terminate{})
		return fe.Flush()
	})
}
