package pooler_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// rawClient is a client past startup whose socket the test drives byte by byte, so that it
// can send and receive messages far larger than it holds in memory.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func rawConnect(ctx context.Context, t *testing.T, dsn string) *rawClient {
	t.Helper()
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if err := c.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	hj, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return &rawClient{conn: hj.Conn, r: bufio.NewReaderSize(hj.Conn, 64<<10)}
}

func (c *rawClient) send(msgs ...[]byte) error {
	var b []byte
	for _, m := range msgs {
		b = append(b, m...)
	}
	_, err := c.conn.Write(b)
	return err
}

// msg frames one protocol message.
func msg(typ byte, body ...[]byte) []byte {
	n := 4
	for _, b := range body {
		n += len(b)
	}
	out := binary.BigEndian.AppendUint32([]byte{typ}, uint32(n))
	for _, b := range body {
		out = append(out, b...)
	}
	return out
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// sendStreamed writes a message whose body is head, fillN copies of the byte fill, then tail,
// in 64 KiB pieces, never holding it whole.
func (c *rawClient) sendStreamed(typ byte, head []byte, fill byte, fillN int, tail []byte) error {
	hdr := binary.BigEndian.AppendUint32([]byte{typ}, uint32(4+len(head)+fillN+len(tail)))
	if _, err := c.conn.Write(append(hdr, head...)); err != nil {
		return err
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = fill
	}
	for fillN > 0 {
		k := min(fillN, len(chunk))
		if _, err := c.conn.Write(chunk[:k]); err != nil {
			return err
		}
		fillN -= k
	}
	_, err := c.conn.Write(tail)
	return err
}

// next reads one message; bodies over 1 MiB are discarded and reported by length only.
func (c *rawClient) next() (typ byte, body []byte, n int, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, 0, err
	}
	n = int(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n > 1<<20 {
		_, err = io.CopyN(io.Discard, c.r, int64(n))
		return hdr[0], nil, n, err
	}
	body = make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return hdr[0], body, n, err
}

// untilReady reads up to ReadyForQuery and returns the first column of the data rows (their
// length when discarded) and the first ErrorResponse.
func (c *rawClient) untilReady() (values []string, pgErr string, err error) {
	for {
		typ, body, n, err := c.next()
		if err != nil {
			return values, pgErr, err
		}
		switch typ {
		case 'D':
			if body == nil {
				values = append(values, fmt.Sprintf("<%d bytes>", n-6))
				continue
			}
			if l := int32(binary.BigEndian.Uint32(body[2:])); l >= 0 {
				values = append(values, string(body[6:6+l]))
			}
		case 'E':
			if pgErr == "" {
				pgErr = errorText(body)
			}
		case 'Z':
			return values, pgErr, nil
		}
	}
}

// errorText renders an ErrorResponse body as "SEVERITY CODE message".
func errorText(body []byte) string {
	fields := map[byte]string{}
	for len(body) > 1 && body[0] != 0 {
		f := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		fields[f] = string(body[1:end])
		body = body[min(end+1, len(body)):]
	}
	return fields['S'] + " " + fields['C'] + " " + fields['M']
}

// Clients sending huge messages (60 MiB query texts and Bind parameters) do not grow the
// pooler: messages are streamed through in pieces, never held whole.
func TestLargeMessagesStreamThrough(t *testing.T) {
	p := startPoolerProcess(t, func(c *config.Config) { c.Pool.Size = 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, before := p.warmAndMark(ctx, t)

	const size = 60 << 20
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		wg.Go(func() {
			c := rawConnect(ctx, t, p.dsn())
			var err error
			if i < 3 {
				// A simple query whose text is 60 MiB.
				err = c.sendStreamed('Q', []byte("select length('"), 'x', size, cstr("')"))
			} else {
				// A named statement whose Bind carries a 60 MiB parameter.
				err = c.send(msg('P', cstr("big"), cstr("select length($1::text)"), []byte{0, 0}))
				if err == nil {
					head := append(append(cstr(""), cstr("big")...), 0, 0, 0, 1)
					head = binary.BigEndian.AppendUint32(head, size)
					err = c.sendStreamed('B', head, 'y', size, []byte{0, 0})
				}
				if err == nil {
					err = c.send(msg('E', cstr(""), []byte{0, 0, 0, 0}), msg('S'))
				}
			}
			if err != nil {
				errs <- fmt.Errorf("client %d send: %w", i, err)
				return
			}
			values, pgErr, err := c.untilReady()
			switch {
			case err != nil:
				errs <- fmt.Errorf("client %d: %w", i, err)
			case pgErr != "" || len(values) != 1 || values[0] != strconv.Itoa(size):
				errs <- fmt.Errorf("client %d: values %q, error %q", i, values, pgErr)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.checkPeakGrowth(t, before, "5 clients sent 60 MiB messages")
}

// A 200 MB row read through the pooler does not grow it: rows are passed on as they arrive.
func TestLargeRowStreamsThrough(t *testing.T) {
	p := startPoolerProcess(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, before := p.warmAndMark(ctx, t)
	if err := c.send(msg('Q', cstr("select repeat('x', 200000000)"))); err != nil {
		t.Fatal(err)
	}
	values, pgErr, err := c.untilReady()
	if err != nil || pgErr != "" || len(values) != 1 || values[0] != "<200000000 bytes>" {
		t.Fatalf("values %q, error %q, %v", values, pgErr, err)
	}
	p.checkPeakGrowth(t, before, "a 200 MB row passed")
}

// warmAndMark runs one query through the pooler (so its upstream connection and buffers
// exist), then reads its RSS and restarts its peak there; it returns the client.
func (p *poolerProcess) warmAndMark(ctx context.Context, t *testing.T) (*rawClient, int64) {
	t.Helper()
	c := rawConnect(ctx, t, p.dsn())
	if err := c.send(msg('Q', cstr("select 1"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.untilReady(); err != nil {
		t.Fatal(err)
	}
	before, _ := p.memory(t)
	p.resetPeak(t)
	return c, before
}

// checkPeakGrowth fails unless the pooler's peak RSS stayed within 64 MiB of before.
func (p *poolerProcess) checkPeakGrowth(t *testing.T, before int64, while string) {
	t.Helper()
	_, peak := p.memory(t)
	t.Logf("pooler RSS %d MiB before; peak while %s: +%d MiB", before>>20, while, (peak-before)>>20)
	if peak-before >= 64<<20 {
		t.Fatalf("pooler RSS grew by %d MiB while %s (limit 64 MiB)", (peak-before)>>20, while)
	}
}

// 100,000 distinct statement texts from one client keep the shared registry within its byte
// budget; statements PostgreSQL rejects are forgotten; once the client leaves, the heap is back
// near where it started.
func TestStatementRegistryStaysWithinBudget(t *testing.T) {
	const budget = 1 << 20
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 2
		c.Pool.PreparedStatementBytes = budget
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	heapBefore := liveHeap()

	c := rawConnect(ctx, t, h.dsn(h.key, ""))
	const n, batch = 100_000, 1000
	for start := 0; start < n; start += batch {
		var b []byte
		for i := start; i < start+batch; i++ {
			b = append(b, msg('P', cstr("s"+strconv.Itoa(i)), cstr(fmt.Sprintf("select %d as statement_%d", i, i)), []byte{0, 0})...)
		}
		if err := c.send(b, msg('S')); err != nil {
			t.Fatal(err)
		}
		if _, pgErr, err := c.untilReady(); err != nil || pgErr != "" {
			t.Fatalf("batch at %d: %q %v", start, pgErr, err)
		}
	}
	st := h.srv.Proxy().Stats()
	t.Logf("after %d statements: registry %d statements, %d bytes (budget %d), %d evicted", n, st.Statements,
		st.StatementBytes, budget, st.StatementsEvicted)
	if st.StatementBytes > budget || st.StatementsEvicted == 0 {
		t.Fatalf("registry over its budget: %+v", st)
	}
	// The client still uses its first statement, long gone from the registry.
	if err := c.send(msg('B', cstr(""), cstr("s0"), []byte{0, 0, 0, 0, 0, 0}), msg('E', cstr(""), []byte{0, 0, 0, 0}),
		msg('S')); err != nil {
		t.Fatal(err)
	}
	if values, pgErr, err := c.untilReady(); err != nil || pgErr != "" || len(values) != 1 || values[0] != "0" {
		t.Fatalf("evicted statement: %q %q %v", values, pgErr, err)
	}
	// Statements PostgreSQL rejects do not stay.
	count := h.srv.Proxy().Stats().Statements
	for i := range 50 {
		if err := c.send(msg('P', cstr("bad"+strconv.Itoa(i)), cstr(fmt.Sprintf("selec %d", i)), []byte{0, 0}), msg('S')); err != nil {
			t.Fatal(err)
		}
		if _, pgErr, err := c.untilReady(); err != nil || pgErr == "" {
			t.Fatalf("bad statement %d: %q %v", i, pgErr, err)
		}
	}
	if got := h.srv.Proxy().Stats().Statements; got > count {
		t.Fatalf("rejected statements kept: %d statements, %d before", got, count)
	}

	if err := c.send(msg('X')); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "client gone", 10*time.Second, func() bool { return h.srv.Proxy().Stats().Clients == 0 })
	heapAfter := liveHeap()
	t.Logf("live heap %d KiB before the client, %d KiB after it left", heapBefore>>10, heapAfter>>10)
	if heapAfter > heapBefore+budget+4<<20 {
		t.Fatalf("heap did not come back: %d KiB before, %d KiB after", heapBefore>>10, heapAfter>>10)
	}
}

func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Clients that pin a connection without finishing their request — Parse without Sync, or a
// query whose results they stop reading — are cut after clientStallTimeout, and their
// connections go back to the pool: on a pool of five, five of each do not starve a sixth.
func TestStalledClientsAreCut(t *testing.T) {
	const stall = time.Second
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 5
		c.Pool.ClientStallTimeout = config.Duration{Duration: stall}
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 20 * time.Second}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	active := func() int { return h.srv.Pool().Stats().Active }

	t.Run("Parse without Sync", func(t *testing.T) {
		var clients []*rawClient
		for range 5 {
			c := rawConnect(ctx, t, h.dsn(h.key, ""))
			if err := c.send(msg('P', cstr(""), cstr("select 1"), []byte{0, 0})); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
		testutil.Eventually(t, "five connections pinned", 10*time.Second, func() bool { return active() == 5 })
		start := time.Now()
		for i, c := range clients {
			_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, pgErr, err := c.untilReady()
			if !errors.Is(err, io.EOF) || pgErr == "" {
				t.Fatalf("client %d: want a FATAL and the connection closed, got %q, %v", i, pgErr, err)
			}
			t.Logf("client %d cut after %v: %s", i, time.Since(start).Round(time.Millisecond), pgErr)
		}
		if d := time.Since(start); d > stall+time.Second {
			t.Fatalf("stalled clients cut only after %v (clientStallTimeout %v)", d, stall)
		}
		selectOne(ctx, t, h)
	})

	t.Run("not reading a large result", func(t *testing.T) {
		for range 5 {
			c := rawConnect(ctx, t, h.dsn(h.key, ""))
			if err := c.send(msg('Q', cstr("select repeat('x', 10000) from generate_series(1, 100000)"))); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Eventually(t, "five connections pinned", 10*time.Second, func() bool { return active() == 5 })
		start := time.Now()
		selectOne(ctx, t, h)
		if d := time.Since(start); d > stall+2*time.Second {
			t.Fatalf("a connection came free only after %v (clientStallTimeout %v)", d, stall)
		}
		testutil.Eventually(t, "stalled readers cut", 10*time.Second, func() bool { return h.srv.Proxy().Stats().Clients == 0 })
	})
}

// A client idle inside a transaction for idleTransactionTimeout gets FATAL 25P03, in transaction
// and in session mode, and the connection it held comes back outside that transaction: on a pool
// of one, the next client runs on it, in a transaction of its own, with the first one's lock gone.
func TestIdleInTransactionIsCut(t *testing.T) {
	const timeout = 500 * time.Millisecond
	for _, mode := range []string{config.ModeTransaction, config.ModeSession} {
		t.Run(mode, func(t *testing.T) {
			h := startPooler(t, func(c *config.Config) {
				c.Pool.Mode = mode
				c.Pool.Size = 1
				c.Pool.IdleTransactionTimeout = config.Duration{Duration: timeout}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			idle := h.connect(ctx, t)
			exec1(ctx, t, idle, "begin")
			exec1(ctx, t, idle, "select pg_advisory_xact_lock(8128)")
			began := time.Now()
			err := idle.WaitForNotification(ctx) // returns with the error the pooler sends
			waited := time.Since(began)
			if pgCode(err) != "25P03" {
				t.Fatalf("idle client in a transaction: %v, want FATAL 25P03", err)
			}
			// The janitor looks every quarter of the timeout; a busy machine may add a little.
			if waited < timeout || waited > timeout+3*time.Second {
				t.Fatalf("cut after %v, want just after idleTransactionTimeout (%v)", waited, timeout)
			}
			next := h.connect(ctx, t)
			if got := exec1(ctx, t, next, "select count(*) from pg_locks where locktype = 'advisory'"); got != "0" {
				t.Fatalf("%s advisory locks left from the cut transaction", got)
			}
			if got := exec1(ctx, t, next, "select now() = statement_timestamp()"); got != "t" {
				t.Fatal("the next client runs inside the cut client's transaction")
			}
		})
	}
}

func selectOne(ctx context.Context, t *testing.T, h *harness) {
	t.Helper()
	c := h.connect(ctx, t)
	if got := exec1(ctx, t, c, "select 1"); got != "1" {
		t.Fatalf("select 1 = %q", got)
	}
	c.Close(ctx)
}

// After PostgreSQL terminates the pool's idle connections (pg_terminate_backend, as an
// operator or idle_session_timeout would), new clients never see the FATAL: a connection found
// dead is replaced at checkout, or its first request moves to a fresh one.
func TestTerminatedConnectionsAreReplaced(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 5
		c.Pool.HealthCheckPeriod = config.Duration{Duration: time.Hour}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgconn.Connect(ctx, pg.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)

	for round, waitGone := range []bool{false, true} {
		pids := openPoolConnections(ctx, t, h, 5)
		for _, pid := range pids {
			if _, err := admin.Exec(ctx, "select pg_terminate_backend("+pid+")").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
		if waitGone {
			testutil.Eventually(t, "terminated backends gone", 10*time.Second, func() bool {
				res, err := admin.Exec(ctx, "select count(*) from pg_stat_activity where pid in ("+joinPIDs(pids)+")").ReadAll()
				return err == nil && string(res[0].Rows[0][0]) == "0"
			})
		}
		var wg sync.WaitGroup
		errs := make(chan error, 25)
		for range 25 {
			wg.Go(func() {
				c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
				if err != nil {
					errs <- err
					return
				}
				defer c.Close(ctx)
				res, err := c.Exec(ctx, "select 1").ReadAll()
				if err != nil {
					errs <- err
				} else if string(res[0].Rows[0][0]) != "1" {
					errs <- fmt.Errorf("select 1 = %q", res[0].Rows[0][0])
				}
			})
		}
		wg.Wait()
		close(errs)
		failures := 0
		for err := range errs {
			failures++
			t.Errorf("round %d: %v", round, err)
		}
		t.Logf("round %d (waited for the backends to exit: %v): 25 clients, %d failures; pool: %d found dead at checkout, %d requests replayed",
			round, waitGone, failures, h.srv.Pool().Stats().DeadOnCheckout, h.srv.Proxy().Stats().Replays)
	}
}

// openPoolConnections makes the pool hold n idle connections and returns their backend PIDs.
func openPoolConnections(ctx context.Context, t *testing.T, h *harness, n int) []string {
	t.Helper()
	var clients []*pgconn.PgConn
	var pids []string
	for range n {
		c := h.connect(ctx, t)
		exec1(ctx, t, c, "begin")
		pids = append(pids, exec1(ctx, t, c, "select pg_backend_pid()"))
		clients = append(clients, c)
	}
	for _, c := range clients {
		exec1(ctx, t, c, "commit")
		c.Close(ctx)
	}
	return pids
}

func joinPIDs(pids []string) string {
	out := ""
	for i, p := range pids {
		if i > 0 {
			out += ","
		}
		out += p
	}
	return out
}
