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
	"testing"

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
