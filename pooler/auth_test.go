package pooler_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

func psql(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql not found: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPsqlOverTLSWithSCRAM(t *testing.T) {
	tf := testutil.ServerTLS(t)
	h := startPooler(t, func(c *config.Config) { c.TLS = &config.TLS{CertFile: tf.CertFile, KeyFile: tf.KeyFile} })
	env := []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", h.port()), "PGUSER=" + h.key.name,
		"PGDATABASE=app", "PGSSLMODE=verify-full", "PGSSLROOTCERT=" + tf.CAFile, "PGCHANNELBINDING=disable"}
	out, err := psql(t, append(env, "PGPASSWORD="+h.key.secret), "-X", "-At", "-c", "select 6 * 7", "-c", `\conninfo`)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "42\n") || !strings.Contains(out, "SSL connection") {
		t.Fatalf("psql output:\n%s", out)
	}
	// The pooler offered SCRAM: a psql that refuses anything else still gets in.
	out, err = psql(t, append(env, "PGPASSWORD="+h.key.secret, "PGREQUIREAUTH=scram-sha-256"), "-X", "-At", "-c", "select 1")
	if err != nil && !strings.Contains(out, "invalid connection option") && !strings.Contains(out, "require_auth") {
		t.Fatalf("psql requiring scram: %v\n%s", err, out)
	}
	out, err = psql(t, append(env, "PGPASSWORD=ep_wrong"), "-X", "-At", "-c", "select 1")
	if err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("wrong key over TLS: err=%v\n%s", err, out)
	}
}

func TestWrongKeyRefusedOverSCRAMAndCleartext(t *testing.T) {
	for _, method := range []string{config.AuthSCRAM, config.AuthPassword} {
		t.Run(method, func(t *testing.T) {
			h := startPooler(t, func(c *config.Config) {
				c.ClientAuthMethod = method
				c.AllowCleartextWithoutTLS = true
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// The right key works with this method.
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			if err != nil {
				t.Fatalf("right key refused: %v", err)
			}
			if got := exec1(ctx, t, c, "select current_database()"); got != "app" {
				t.Fatalf("current_database = %q", got)
			}
			c.Close(ctx)
			wrong := h.key
			wrong.secret = "ep_" + strings.Repeat("A", 43)
			unknown := h.key
			unknown.name = "nobody"
			for _, k := range []testKey{wrong, unknown} {
				start := time.Now()
				_, err := pgconn.Connect(ctx, h.dsn(k, ""))
				if code := pgCode(err); code != "28P01" {
					t.Fatalf("key %q: want 28P01, got %v", k.name, err)
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("refusal took %v", time.Since(start))
				}
			}
		})
	}
}

func TestCleartextNeedsTLS(t *testing.T) {
	// Asked for cleartext on a plain TCP connection without the override: the pooler falls back
	// to SCRAM, so the key never crosses the network in the clear.
	h := startPooler(t, func(c *config.Config) { c.ClientAuthMethod = config.AuthPassword })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(h.dsn(h.key, ""))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// pgx's "require_auth" is not available; check through a raw startup instead.
	raw, err := net.Dial("tcp", h.srv.PostgresAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	startup := []byte{0, 3, 0, 0}
	startup = append(startup, "user\x00app\x00database\x00app\x00\x00"...)
	msg := append([]byte{0, 0, 0, byte(len(startup) + 4)}, startup...)
	if _, err := raw.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := raw.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// 'R', length, auth code 10 = SASL
	sawSCRAM := n >= 9 && buf[0] == 'R' && buf[8] == 10
	if !sawSCRAM {
		t.Fatalf("expected AuthenticationSASL, got % x", buf[:n])
	}
}

func TestUnknownDatabaseRefused(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := strings.Replace(h.dsn(h.key, ""), "/app?", "/other?", 1)
	_, err := pgconn.Connect(ctx, dsn)
	if code := pgCode(err); code != "3D000" {
		t.Fatalf("want 3D000, got %v", err)
	}
}

// TestStartupRefusesASecondGSSENCRequest: a client may ask for GSS encryption once (answered
// 'N'), as in PostgreSQL; a second GSSENCRequest is a protocol error, as a second SSLRequest
// is. Otherwise a connection could keep itself in startup, sending one every so often, for as
// long as the auth timeout lets it.
func TestStartupRefusesASecondGSSENCRequest(t *testing.T) {
	h := startPooler(t, nil)
	raw, err := net.Dial("tcp", h.srv.PostgresAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	gssenc := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30} // 80877104
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Write(gssenc); err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 1)
	if _, err := io.ReadFull(raw, answer); err != nil || answer[0] != 'N' {
		t.Fatalf("first GSSENCRequest: %q, %v; want N", answer, err)
	}
	if _, err := raw.Write(gssenc); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(raw)
	if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte("08P01")) {
		t.Fatalf("second GSSENCRequest: %q, want ErrorResponse 08P01 and close", got)
	}
}
