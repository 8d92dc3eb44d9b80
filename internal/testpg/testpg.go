// Package testpg is internal/pgserver for tests: a throwaway PostgreSQL 15 server that a test
// starts with Start (closed when the test ends) and fills with Exec (which fails the test on
// error). See internal/pgserver for how the server is set up (free port below 32768, unix
// socket, scram-sha-256, TLS with WithTLS, run as the postgres user under root).
//
//	func TestX(t *testing.T) {
//		pg := testpg.Start(t)
//		pg.Exec(t, "create table t (id int)")
//		conn, _ := pgx.Connect(ctx, pg.DSN("postgres"))
//	}
//
// A package that shares one server between its tests starts it in TestMain with
// testutil.RunWithPostgres (or New and Close).
package testpg

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/pgserver"
)

// Server is a running pgserver.Server with the test helpers.
type Server struct{ *pgserver.Server }

// Option changes how the server is started.
type Option = pgserver.Option

// The options of pgserver.
var (
	WithSetting = pgserver.WithSetting
	WithTLS     = pgserver.WithTLS
	WithBinDir  = pgserver.WithBinDir
)

// New initialises and starts a server; the caller must Close it.
func New(opts ...Option) (*Server, error) {
	s, err := pgserver.New(opts...)
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

// Start starts a server for a test and closes it when the test ends. It fails the test if the
// server cannot start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Exec runs sql (one or more statements, simple protocol) in database "postgres" and fails the
// test on error.
func (s *Server) Exec(t testing.TB, sql string) {
	t.Helper()
	if err := s.ExecErr(sql); err != nil {
		t.Fatalf("testpg exec %q: %v", sql, err)
	}
}

// Count runs a query that returns one number (select count(*) ...) in database "postgres", with
// $1, $2, ... bound to args, and fails the test on error.
func (s *Server) Count(t testing.TB, sql string, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("testpg connect: %v", err)
	}
	defer conn.Close(context.Background())
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("testpg %q: %v", sql, res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		t.Fatalf("testpg %q: want one value, got %d rows", sql, len(res.Rows))
	}
	n, err := strconv.Atoi(string(res.Rows[0][0]))
	if err != nil {
		t.Fatalf("testpg %q: %v", sql, err)
	}
	return n
}

// ActiveQueries counts the statements whose text matches the LIKE pattern that run on the server
// now (other than this check).
func (s *Server) ActiveQueries(t testing.TB, pattern string) int {
	t.Helper()
	return s.Count(t, "select count(*) from pg_stat_activity where state = 'active' and query like $1 and pid <> pg_backend_pid()", pattern)
}
