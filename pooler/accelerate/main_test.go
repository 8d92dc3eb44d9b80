package accelerate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
	"github.com/edgepool/edgepool/pooler/pool"
)

// pg is one PostgreSQL server shared by the package's tests; each test gets its own database.
var pg *testpg.Server

func TestMain(m *testing.M) { os.Exit(testutil.RunWithPostgres(m, &pg, nil)) }

var dbCounter atomic.Int64

// newDatabase creates an empty database for one test, runs the DDL in it and returns its name.
func newDatabase(t testing.TB, ddl string) string {
	t.Helper()
	name := fmt.Sprintf("accel_%d", dbCounter.Add(1))
	pg.Exec(t, "CREATE DATABASE "+name)
	if ddl != "" {
		execIn(t, name, ddl)
	}
	return name
}

// execIn runs SQL directly in a database (not through the pool) and returns its results; it
// fails the test on error.
func execIn(t testing.TB, db, sql string) []*pgconn.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, pg.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

// newPool returns the pooler's real upstream pool over a test database.
func newPool(t testing.TB, db string, size int) *pool.Pool {
	dsn := pg.DSN(db) + "&application_name=" + url.QueryEscape(t.Name())
	p := pool.New(pool.Settings{Size: size, QueryWaitTimeout: 2 * time.Second, ConnectTimeout: 5 * time.Second},
		pool.Options{Connect: func(ctx context.Context) (*pgconn.PgConn, error) { return pgconn.Connect(ctx, dsn) }})
	t.Cleanup(p.Close)
	return p
}

// testKey is the API key the captures were made with.
const testKey = "test"

func testKeys(t testing.TB, keys ...string) edge.KeyChecker {
	var cfg []config.Key
	for i, k := range keys {
		salt, err := apikey.NewSalt()
		if err != nil {
			t.Fatal(err)
		}
		v, err := apikey.NewSCRAMVerifier(k, salt, apikey.DefaultIterations)
		if err != nil {
			t.Fatal(err)
		}
		cfg = append(cfg, config.Key{Name: fmt.Sprintf("app%d", i), Verifiers: []config.Verifier{
			{SCRAM: v.String(), SHA256: apikey.Digest(k), Fingerprint: apikey.Fingerprint(k)}}})
	}
	ring, err := auth.NewKeyring(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return edge.KeyringChecker(ring)
}

// testServer is the Accelerate endpoint over a pool of a test database.
type testServer struct {
	*Server
	url  string
	pool *pool.Pool
	db   string
}

func newTestServer(t testing.TB, db string, mutate func(*Options)) *testServer {
	t.Helper()
	p := newPool(t, db, 4)
	opts := Options{Upstream: edge.PoolUpstream(p), Keys: testKeys(t, testKey, "other"), Cache: edge.NewCache(8<<20, nil),
		QueryTimeout: 10 * time.Second, CleartextAllowed: func() bool { return true }} // httptest: plain HTTP on loopback
	if mutate != nil {
		mutate(&opts)
	}
	s := NewServer(opts)
	mux := http.NewServeMux()
	s.Register(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &testServer{Server: s, url: ts.URL, pool: p, db: db}
}

// do sends a request with the capture's headers and returns the status, headers and body.
func (ts *testServer) do(t testing.TB, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prisma-Engine-Hash", "7.10.1")
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
