package pooler_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
)

// The fault suite's tools: a TCP proxy between the pooler and PostgreSQL that a test can
// break, and a workload of committing clients whose acknowledged commits are checked against
// the table afterwards.

// faultProxy forwards TCP connections to target until told otherwise: blackhole stops
// forwarding in both directions (sockets stay open, as in a network partition; new connections
// are accepted and then left hanging), heal resumes, reset sends RST on every connection.
type faultProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	open  *sync.Cond // signalled when heal is called
	dark  bool
	pairs map[*net.TCPConn]*net.TCPConn // pooler side → PostgreSQL side
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, pairs: map[*net.TCPConn]*net.TCPConn{}}
	p.open = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		ln.Close()
		p.heal()
		p.reset()
	})
	go p.serve()
	return p
}

func (p *faultProxy) addr() (string, int) {
	a := p.ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c.(*net.TCPConn))
	}
}

func (p *faultProxy) forward(client *net.TCPConn) {
	p.waitLight()
	sc, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	server := sc.(*net.TCPConn)
	p.mu.Lock()
	p.pairs[client] = server
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(server, client); done <- struct{}{} }()
	go func() { p.copy(client, server); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
	<-done
	p.mu.Lock()
	delete(p.pairs, client)
	p.mu.Unlock()
}

// copy relays src to dst, holding what it read while the proxy is dark.
func (p *faultProxy) copy(dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitLight()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *faultProxy) waitLight() {
	p.mu.Lock()
	for p.dark {
		p.open.Wait()
	}
	p.mu.Unlock()
}

func (p *faultProxy) blackhole() {
	p.mu.Lock()
	p.dark = true
	p.mu.Unlock()
}

func (p *faultProxy) heal() {
	p.mu.Lock()
	p.dark = false
	p.open.Broadcast()
	p.mu.Unlock()
}

// reset aborts every forwarded connection with RST on both sides.
func (p *faultProxy) reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, s := range p.pairs {
		_ = c.SetLinger(0)
		_ = s.SetLinger(0)
		c.Close()
		s.Close()
	}
	return len(p.pairs)
}

// ledgerWorkload runs clients through the pooler that each commit small transactions
// (BEGIN; INSERT (worker, seq); COMMIT, three round trips) and remembers which commits were
// acknowledged; an attempt that fails closes its connection and the next one reconnects, as
// an application would. check then proves that no acknowledged commit is missing.
type ledgerWorkload struct {
	pg       *testpg.Server
	database string // the upstream database the pooler uses
	table    string
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	acked    [][2]int
	failures []error
	failedIn []time.Duration // how long each failed attempt's statements took (after its login)
	okIn     []time.Duration // how long each acknowledged transaction took
	attempts int
}

// startLedger starts workers clients connecting with the URL dsn returns at each connect (an
// application that reads its Secret again); each attempt is bounded by attemptTimeout (the
// application's own deadline).
func startLedger(t *testing.T, db *testpg.Server, database string, dsn func() string, table string, workers int, attemptTimeout time.Duration) *ledgerWorkload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, db.DSN(database))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, fmt.Sprintf("drop table if exists %[1]s; create table %[1]s (worker int, seq int, primary key (worker, seq))", table)).ReadAll()
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &ledgerWorkload{pg: db, database: database, table: table, stop: make(chan struct{})}
	for worker := range workers {
		w.wg.Go(func() { w.run(worker, dsn, attemptTimeout) })
	}
	t.Cleanup(w.halt)
	return w
}

func (w *ledgerWorkload) run(worker int, dsn func() string, attemptTimeout time.Duration) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		start := time.Now()
		execStart := start
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		err := func() error {
			if conn == nil {
				c, err := pgconn.Connect(ctx, dsn())
				if err != nil {
					return err
				}
				conn = c
				execStart = time.Now()
			}
			for _, sql := range []string{"begin", fmt.Sprintf("insert into %s values (%d, %d)", w.table, worker, seq), "commit"} {
				if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
					return err
				}
			}
			return nil
		}()
		cancel()
		w.mu.Lock()
		w.attempts++
		if err == nil {
			w.acked = append(w.acked, [2]int{worker, seq})
			w.okIn = append(w.okIn, time.Since(start))
		} else {
			w.failures = append(w.failures, err)
			w.failedIn = append(w.failedIn, time.Since(execStart))
		}
		w.mu.Unlock()
		if err != nil {
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			time.Sleep(20 * time.Millisecond) // an application's retry pause: the load, not a wait for a condition
		}
	}
}

func (w *ledgerWorkload) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

func (w *ledgerWorkload) commits() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitCommits waits until n more commits than now are acknowledged, or fails after timeout.
func (w *ledgerWorkload) waitCommits(t *testing.T, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start, target := time.Now(), w.commits()+n
	testutil.Eventually(t, fmt.Sprintf("%d more acknowledged commits", n), timeout, func() bool { return w.commits() >= target })
	return time.Since(start)
}

// mark returns the number of failures so far, to look at the ones after it.
func (w *ledgerWorkload) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.failures)
}

// failuresSince returns the failures after mark and how long each attempt took.
func (w *ledgerWorkload) failuresSince(mark int) ([]error, []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.failures[mark:]), slices.Clone(w.failedIn[mark:])
}

// check stops the workload and proves every acknowledged commit is in the table; it reports
// what happened.
func (w *ledgerWorkload) check(t *testing.T) {
	t.Helper()
	w.halt()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var conn *pgconn.PgConn
	if err := testutil.Poll(30*time.Second, func() (err error) { // PostgreSQL may still be recovering
		conn, err = pgconn.Connect(ctx, w.pg.DSN(w.database))
		return err
	}); err != nil {
		t.Fatalf("connect to check the ledger: %v", err)
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "select worker, seq from "+w.table).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[[2]int]bool{}
	for _, row := range res[0].Rows {
		var k [2]int
		if _, err := fmt.Sscan(string(row[0])+" "+string(row[1]), &k[0], &k[1]); err != nil {
			t.Fatal(err)
		}
		inTable[k] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var lost [][2]int
	for _, k := range w.acked {
		if !inTable[k] {
			lost = append(lost, k)
		}
	}
	t.Logf("ledger %s: %d attempts, %d acknowledged commits (all checked), %d rows, %d failed attempts (slowest %v), p99 commit %v",
		w.table, w.attempts, len(w.acked), len(inTable), len(w.failures), maxDuration(w.failedIn), percentile(w.okIn, 0.99))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged commits are missing from %s: %v", len(lost), w.table, lost[:min(len(lost), 10)])
	}
	if len(inTable) > w.attempts {
		t.Fatalf("%d rows for %d attempts", len(inTable), w.attempts)
	}
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
