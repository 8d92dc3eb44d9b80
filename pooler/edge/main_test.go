package edge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/jackc/pgx/v5/pgconn"
)

// pg is one PostgreSQL server shared by the package's tests.
var pg *testpg.Server

func TestMain(m *testing.M) {
	var err error
	if pg, err = testpg.New(); err != nil {
		fmt.Fprintln(os.Stderr, "edge tests need PostgreSQL 15 (hack/install-test-deps.sh):", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	os.Exit(code)
}

// connPool is a minimal fixed-size upstream pool over real connections, standing in for the
// pooler's pool in this package's tests: it lends idle connections, waits up to a timeout and
// then fails with SQLSTATE 53300, and drops connections returned closed or in a transaction.
type connPool struct {
	dsn  string
	wait time.Duration
	idle chan *pgconn.PgConn // nil entries are slots without a connection yet
}

func newConnPool(t *testing.T, size int, wait time.Duration) *connPool {
	p := &connPool{dsn: pg.DSN("postgres"), wait: wait, idle: make(chan *pgconn.PgConn, size)}
	for range size {
		p.idle <- nil
	}
	t.Cleanup(func() {
		for range size {
			if c := <-p.idle; c != nil {
				c.Close(context.Background())
			}
		}
	})
	return p
}

func (p *connPool) Acquire(ctx context.Context) (Lease, error) {
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	var c *pgconn.PgConn
	select {
	case c = <-p.idle:
	case <-timer.C:
		return nil, &pgconn.PgError{Severity: "ERROR", Code: "53300", Message: "query_wait_timeout: no upstream connection free"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c == nil || c.IsClosed() {
		var err error
		if c, err = pgconn.Connect(ctx, p.dsn); err != nil {
			p.idle <- nil
			return nil, err
		}
	}
	return &connLease{p: p, c: c}, nil
}

type connLease struct {
	p *connPool
	c *pgconn.PgConn
}

func (l *connLease) PgConn() *pgconn.PgConn { return l.c }

func (l *connLease) Release() {
	if l.c.IsClosed() || l.c.TxStatus() != 'I' {
		l.c.Close(context.Background())
		l.p.idle <- nil
		return
	}
	l.p.idle <- l.c
}

// testKey is the API key of the tests' "app" key name.
var testKey = mustKey()

func mustKey() string {
	k, err := apikey.Generate()
	if err != nil {
		panic(err)
	}
	return k
}

func testKeys() []config.Key {
	return []config.Key{{Name: "app", Verifiers: []config.Verifier{{SCRAM: "unused", SHA256: apikey.Digest(testKey)}}}}
}

// newTestServer starts the edge handler over a pool of size connections.
func newTestServer(t *testing.T, size int, mutate func(*Options)) (*httptest.Server, *Server) {
	t.Helper()
	opts := Options{
		Upstream: newConnPool(t, size, 2*time.Second), Keys: NewKeySet(testKeys()), Database: "postgres",
		MaxRequestBytes: 1 << 20, MaxResponseBytes: 1 << 20, StatementTimeout: 5 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	s := NewServer(opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, s
}

// post sends body to /sql with the test key and extra headers ("Name: value").
func post(t *testing.T, ts *httptest.Server, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/sql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Neon-Connection-String", "postgres://app:"+testKey+"@localhost/postgres")
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		if value = strings.TrimSpace(value); value == "" {
			req.Header.Del(name)
		} else {
			req.Header.Set(name, value)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(t, resp)
}
