package edge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/pool"
)

// pg is one PostgreSQL server shared by the package's tests.
var pg *testpg.Server

func TestMain(m *testing.M) { os.Exit(testutil.RunWithPostgres(m, &pg, nil)) }

// newPool returns the pooler's real upstream pool over the test server.
func newPool(t testing.TB, size int, wait time.Duration) *pool.Pool {
	// The application name lets a test count its pool's connections in pg_stat_activity.
	dsn := pg.DSN("postgres") + "&application_name=" + url.QueryEscape(t.Name())
	p := pool.New(pool.Settings{Size: size, QueryWaitTimeout: wait, ConnectTimeout: 5 * time.Second},
		pool.Options{Connect: func(ctx context.Context) (*pgconn.PgConn, error) { return pgconn.Connect(ctx, dsn) }})
	t.Cleanup(p.Close)
	return p
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

func testKeyChecker(t testing.TB) KeyChecker {
	salt, err := apikey.NewSalt()
	if err != nil {
		t.Fatal(err)
	}
	v, err := apikey.ConfigVerifier(testKey, salt, apikey.DefaultIterations)
	if err != nil {
		t.Fatal(err)
	}
	k, err := auth.NewKeyring([]config.Key{{Name: "app", Verifiers: []config.Verifier{v}}})
	if err != nil {
		t.Fatal(err)
	}
	return KeyringChecker(k)
}

// newTestServer starts the edge handler over a pool of size connections.
func newTestServer(t testing.TB, size int, mutate func(*Options)) (*httptest.Server, *Server) {
	t.Helper()
	opts := Options{
		Upstream: PoolUpstream(newPool(t, size, 2*time.Second)), Keys: testKeyChecker(t), Database: "postgres",
		MaxRequestBytes: 1 << 20, MaxResponseBytes: 1 << 20, StatementTimeout: 5 * time.Second,
		CleartextAllowed: func() bool { return true }, // httptest serves plain HTTP on loopback
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
