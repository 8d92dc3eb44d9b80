package pooler_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/certs"
	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/pooler/config"
)

var (
	tlsPGOnce sync.Once
	tlsPG     *testpg.Server
	tlsPGErr  error
)

// tlsPostgres is a second PostgreSQL that serves TLS only, with a certificate for "localhost"
// alone (so 127.0.0.1 is a wrong host name for verify-full). Started on first use.
func tlsPostgres(t *testing.T) *testpg.Server {
	t.Helper()
	tlsPGOnce.Do(func() {
		tlsPG, tlsPGErr = testpg.New(testpg.WithTLS("localhost"))
		if tlsPGErr == nil {
			tlsPGErr = tlsPG.ExecErr("create database app")
		}
	})
	if tlsPGErr != nil {
		t.Fatalf("TLS PostgreSQL: %v", tlsPGErr)
	}
	return tlsPG
}

// TestUpstreamTLSModes runs the pooler against a TLS-only PostgreSQL in each sslMode, with the
// right CA, another CA and a wrong host name. Limit proved: upstream.sslMode — a failed
// verification never falls back to an unverified or plain connection; clients get 08006
// within the query-wait timeout and the log names the reason.
func TestUpstreamTLSModes(t *testing.T) {
	tpg := tlsPostgres(t)
	dir := t.TempDir()
	goodCA := filepath.Join(dir, "good-ca.crt")
	otherCA := filepath.Join(dir, "other-ca.crt")
	other, _, err := certs.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goodCA, tpg.CACert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherCA, other, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, mode, caFile string
		wantOK                   bool
	}{
		{"require", "localhost", "require", "", true},
		{"verify-ca", "127.0.0.1", "verify-ca", goodCA, true},
		{"verify-full", "localhost", "verify-full", goodCA, true},
		{"require with another CA", "localhost", "require", otherCA, false},
		{"verify-ca with another CA", "localhost", "verify-ca", otherCA, false},
		{"verify-full with another CA", "localhost", "verify-full", otherCA, false},
		{"verify-full with the wrong host name", "127.0.0.1", "verify-full", goodCA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startPooler(t, func(c *config.Config) {
				c.Upstream = config.Upstream{Host: tt.host, Port: tpg.Port, Database: "app", User: tpg.User,
					Password: tpg.Password, SSLMode: tt.mode, CAFile: tt.caFile}
				c.Pool.QueryWaitTimeout = config.Duration{Duration: 2 * time.Second}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// A new pooler learns the server's parameters at the first login: that already
			// needs an upstream connection.
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			var res []*pgconn.Result
			if err == nil {
				defer c.Close(ctx)
				res, err = c.Exec(ctx, "select ssl::text from pg_stat_ssl where pid = pg_backend_pid()").ReadAll()
			}
			if tt.wantOK {
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				if got := string(res[0].Rows[0][0]); got != "true" {
					t.Fatalf("upstream connection ssl = %s", got)
				}
				return
			}
			if err == nil {
				t.Fatal("login and query succeeded through an upstream that should fail verification")
			}
			if code := pgCode(err); code != "08006" && code != "53300" {
				t.Fatalf("error %v (SQLSTATE %s), want 08006 or 53300", err, code)
			}
			if logs := h.log.String(); !strings.Contains(logs, "reason=TLSFailed") {
				t.Fatalf("log does not name TLSFailed:\n%s", logs)
			}
			if code, _ := httpGet(t, h.adminURL("/readyz")); code != 503 {
				t.Fatalf("/readyz = %d with an unverifiable upstream", code)
			}
		})
	}
}
