package pgserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/certs"
	"github.com/edgepool/edgepool/internal/pgserver"
	"github.com/edgepool/edgepool/internal/testpg"
)

func TestStartExecRestart(t *testing.T) {
	pg := testpg.Start(t)
	if pg.Port <= 0 || pg.Port >= 32768 {
		t.Fatalf("port %d outside [1, 32768)", pg.Port)
	}
	pg.Exec(t, "create table t (v int); insert into t values (42)")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	readValue := func() string {
		conn, err := pgconn.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		res, err := conn.Exec(ctx, "select v from t").ReadAll()
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		return string(res[0].Rows[0][0])
	}
	if got := readValue(); got != "42" {
		t.Fatalf("got %q, want 42", got)
	}

	// Wrong password is refused: scram-sha-256 is really in force.
	bad := "postgres://postgres:wrong@" + pg.Addr() + "/postgres?sslmode=disable"
	if conn, err := pgconn.Connect(ctx, bad); err == nil {
		conn.Close(ctx)
		t.Fatal("connect with a wrong password succeeded")
	}

	pg.Stop()
	if err := pg.ExecErr("select 1"); err == nil {
		t.Fatal("stopped server still answers")
	}
	if err := pg.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := readValue(); got != "42" {
		t.Fatalf("after restart got %q, want 42", got)
	}
}

func TestNewAndClose(t *testing.T) {
	pg, err := pgserver.New(pgserver.WithSetting("max_connections", "20"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(pg.SocketDir) // the temp dir holding data, socket and log
	if err := pg.ExecErr("select 1"); err != nil {
		t.Fatal(err)
	}
	pg.Close()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("data dir %s left behind: %v", root, err)
	}
}

// TestTLS: a WithTLS server takes verify-full against its CA over TCP with SCRAM, refuses
// plain TCP, and fails verification against another CA or a host name not in its certificate.
func TestTLS(t *testing.T) {
	pg := testpg.Start(t, pgserver.WithTLS())
	if len(pg.CACert) == 0 || pg.CAFile == "" {
		t.Fatal("no CA exposed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	conn, err := pgconn.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatalf("verify-full connect: %v", err)
	}
	res, err := conn.Exec(ctx, "select s.ssl::text, a.usename from pg_stat_ssl s join pg_stat_activity a using (pid) where pid = pg_backend_pid()").ReadAll()
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res[0].Rows[0][0]); got != "true" {
		t.Fatalf("pg_stat_ssl.ssl = %s, want true", got)
	}

	// The server's CA via an in-memory pool also works (what the pooler and operator do).
	cfg, err := pgconn.ParseConfig("postgres://" + pg.User + ":" + pg.Password + "@" + pg.Addr() + "/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pg.CACert) {
		t.Fatal("CACert is not PEM")
	}
	otherCA, _, err := certs.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(otherCA)

	tests := []struct {
		name    string
		tls     *tls.Config
		wantErr string
	}{
		{"in-memory CA, host 127.0.0.1", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, ""},
		{"in-memory CA, host localhost", &tls.Config{RootCAs: roots, ServerName: "localhost"}, ""},
		{"plain TCP rejected by pg_hba", nil, "pg_hba.conf rejects connection"},
		{"wrong CA", &tls.Config{RootCAs: otherRoots, ServerName: "127.0.0.1"}, "certificate signed by unknown authority"},
		{"wrong host name", &tls.Config{RootCAs: roots, ServerName: "db.example.internal"}, "not db.example.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg.Copy()
			c.TLSConfig = tt.tls
			conn, err := pgconn.ConnectConfig(ctx, c)
			if err == nil {
				conn.Close(ctx)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("connect: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}

	// Restart keeps TLS on.
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := pg.ExecErr("select 1"); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgconn.Connect(ctx, pg.DSN("postgres")); err != nil {
		t.Fatalf("verify-full after restart: %v", err)
	} else {
		conn.Close(ctx)
	}
}
