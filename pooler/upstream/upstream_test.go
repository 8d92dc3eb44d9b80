package upstream

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/internal/certs"
	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
)

var (
	tlsPG   *testpg.Server // TLS only, certificate for "localhost" alone
	plainPG *testpg.Server // no TLS
)

func TestMain(m *testing.M) {
	code := testutil.RunWithPostgres(m, &tlsPG, func(*testpg.Server) error {
		var err error
		plainPG, err = testpg.New()
		return err
	}, testpg.WithTLS("localhost"))
	if plainPG != nil {
		plainPG.Close()
	}
	os.Exit(code)
}

// TestConnConfig pins what each sslMode turns into, without a server.
func TestConnConfig(t *testing.T) {
	ca, _, err := certs.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		target        Target
		wantTLS       bool
		wantSkip      bool // InsecureSkipVerify
		wantVerifyCB  bool // chain checked in VerifyConnection
		wantFallback  bool
		wantServer    string
		wantRequire   string
		wantErrSubstr string
	}{
		{name: "disable", target: Target{SSLMode: SSLDisable}, wantRequire: "scram-sha-256"},
		{name: "prefer falls back to plain", target: Target{SSLMode: SSLPrefer}, wantTLS: true, wantSkip: true, wantFallback: true, wantServer: "db.internal", wantRequire: "scram-sha-256"},
		{name: "require without CA encrypts only", target: Target{SSLMode: SSLRequire}, wantTLS: true, wantSkip: true, wantServer: "db.internal", wantRequire: "scram-sha-256"},
		{name: "require with CA checks the chain", target: Target{SSLMode: SSLRequire, CA: ca}, wantTLS: true, wantSkip: true, wantVerifyCB: true, wantServer: "db.internal", wantRequire: "scram-sha-256"},
		{name: "verify-ca", target: Target{SSLMode: SSLVerifyCA, CA: ca}, wantTLS: true, wantSkip: true, wantVerifyCB: true, wantServer: "db.internal", wantRequire: "scram-sha-256"},
		{name: "verify-full", target: Target{SSLMode: SSLVerifyFull, CA: ca}, wantTLS: true, wantServer: "db.internal", wantRequire: "scram-sha-256"},
		{name: "requireAuth list", target: Target{SSLMode: SSLDisable, RequireAuth: "scram-sha-256,md5"}, wantRequire: "scram-sha-256,md5"},
		{name: "requireAuth any", target: Target{SSLMode: SSLDisable, RequireAuth: AnyAuth}, wantRequire: ""},
		{name: "bad requireAuth", target: Target{SSLMode: SSLDisable, RequireAuth: "kerberos-please"}, wantErrSubstr: "requireAuth"},
		{name: "bad sslMode", target: Target{SSLMode: "allow-ish"}, wantErrSubstr: "sslMode"},
		{name: "CA that is not PEM", target: Target{SSLMode: SSLVerifyFull, CA: []byte("junk")}, wantErrSubstr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.target.Host, tt.target.Port, tt.target.User, tt.target.Database = "db.internal", 5432, "app", "shop"
			tt.target.Password = "s3cret-password"
			cfg, err := ConnConfig(tt.target)
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErrSubstr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error contains the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Password != "s3cret-password" || cfg.User != "app" || cfg.Database != "shop" || cfg.Host != "db.internal" || cfg.Port != 5432 {
				t.Fatalf("connection settings: %+v", cfg)
			}
			if cfg.RequireAuth != tt.wantRequire {
				t.Fatalf("RequireAuth = %q, want %q", cfg.RequireAuth, tt.wantRequire)
			}
			if (cfg.TLSConfig != nil) != tt.wantTLS {
				t.Fatalf("TLS = %v, want %v", cfg.TLSConfig != nil, tt.wantTLS)
			}
			if (len(cfg.Fallbacks) == 1 && cfg.Fallbacks[0].TLSConfig == nil) != tt.wantFallback {
				t.Fatalf("fallbacks = %+v, want plain fallback %v", cfg.Fallbacks, tt.wantFallback)
			}
			if !tt.wantTLS {
				return
			}
			c := cfg.TLSConfig
			if c.InsecureSkipVerify != tt.wantSkip || (c.VerifyConnection != nil) != tt.wantVerifyCB || c.ServerName != tt.wantServer {
				t.Fatalf("tls: skip=%v verifyCB=%v serverName=%q", c.InsecureSkipVerify, c.VerifyConnection != nil, c.ServerName)
			}
			if tt.target.SSLMode == SSLVerifyFull && c.RootCAs == nil {
				t.Fatal("verify-full without the CA as roots")
			}
		})
	}
}

// TestAgainstTLSPostgres connects to a real PostgreSQL that serves TLS only with a certificate
// for "localhost", in every sslMode, with the right CA, another CA and the wrong host name.
func TestAgainstTLSPostgres(t *testing.T) {
	otherCA, _, err := certs.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good := Target{Host: "localhost", Port: tlsPG.Port, Database: "postgres", User: tlsPG.User, Password: tlsPG.Password,
		ConnectTimeout: 5 * time.Second}
	with := func(mode string, ca []byte, mutate ...func(*Target)) Target {
		t := good
		t.SSLMode, t.CA = mode, ca
		for _, m := range mutate {
			m(&t)
		}
		return t
	}
	byIP := func(t *Target) { t.Host = "127.0.0.1" } // not a name in the certificate
	tests := []struct {
		name       string
		target     Target
		wantReason string // "" = connects
	}{
		{"require", with(SSLRequire, nil), ""},
		{"require with the CA", with(SSLRequire, tlsPG.CACert), ""},
		{"require with another CA", with(SSLRequire, otherCA), ReasonTLSFailed},
		{"verify-ca", with(SSLVerifyCA, tlsPG.CACert), ""},
		{"verify-ca ignores the host name", with(SSLVerifyCA, tlsPG.CACert, byIP), ""},
		{"verify-ca with another CA", with(SSLVerifyCA, otherCA), ReasonTLSFailed},
		{"verify-full", with(SSLVerifyFull, tlsPG.CACert), ""},
		{"verify-full with another CA", with(SSLVerifyFull, otherCA), ReasonTLSFailed},
		{"verify-full with the wrong host name", with(SSLVerifyFull, tlsPG.CACert, byIP), ReasonTLSFailed},
		{"verify-full with system roots", with(SSLVerifyFull, nil), ReasonTLSFailed},
		{"prefer uses TLS", with(SSLPrefer, nil), ""},
		{"disable is refused by the server", with(SSLDisable, nil), ReasonAuthenticationFailed}, // pg_hba: hostnossl reject (28000)
		{"wrong password over verify-full", with(SSLVerifyFull, tlsPG.CACert, func(t *Target) { t.Password = "wrong-secret" }), ReasonAuthenticationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			useTLS, err := connect(t, tt.target)
			checkOutcome(t, tt.target, err, tt.wantReason)
			if err == nil && !useTLS {
				t.Fatal("connected without TLS")
			}
		})
	}
}

// TestAgainstPlainPostgres: prefer falls back to plain TCP; require and stronger fail as TLS
// failures, not as "unreachable".
func TestAgainstPlainPostgres(t *testing.T) {
	base := Target{Host: plainPG.Host, Port: plainPG.Port, Database: "postgres", User: plainPG.User,
		Password: plainPG.Password, ConnectTimeout: 5 * time.Second}
	for _, tt := range []struct {
		mode, wantReason string
	}{
		{SSLDisable, ""}, {SSLPrefer, ""}, {SSLRequire, ReasonTLSFailed}, {SSLVerifyFull, ReasonTLSFailed},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			target := base
			target.SSLMode = tt.mode
			_, err := connect(t, target)
			checkOutcome(t, target, err, tt.wantReason)
		})
	}
	t.Run("unknown database", func(t *testing.T) {
		target := base
		target.SSLMode, target.Database = SSLDisable, "nope"
		_, err := connect(t, target)
		checkOutcome(t, target, err, ReasonDatabaseNotFound)
	})
	t.Run("nothing listening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		target := base
		target.SSLMode, target.Port = SSLDisable, l.Addr().(*net.TCPAddr).Port
		l.Close()
		_, err = connect(t, target)
		checkOutcome(t, target, err, ReasonUnreachable)
	})
}

// TestStrippedTLSDoesNotLeakPassword plays a man in the middle that refuses TLS and asks for
// the password in cleartext (or MD5). With the default requireAuth the client gives up before
// sending anything; with requireAuth "any" (libpq's default) it would have sent it.
func TestStrippedTLSDoesNotLeakPassword(t *testing.T) {
	for _, tt := range []struct {
		name        string
		ask         pgproto3.BackendMessage
		requireAuth string
		wantLeak    bool
	}{
		{"cleartext request, default requireAuth", &pgproto3.AuthenticationCleartextPassword{}, "", false},
		{"md5 request, default requireAuth", &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}}, "", false},
		{"cleartext request, requireAuth any", &pgproto3.AuthenticationCleartextPassword{}, AnyAuth, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, got := fishingServer(t, tt.ask)
			host, port, _ := net.SplitHostPort(addr)
			target := Target{Host: host, Port: atoi(port), Database: "postgres", User: "app", Password: "the-upstream-password",
				SSLMode: SSLPrefer, RequireAuth: tt.requireAuth, ConnectTimeout: 3 * time.Second}
			_, err := connect(t, target)
			if err == nil {
				t.Fatal("connected to the fishing server")
			}
			leaked := strings.Contains(<-got, "the-upstream-password")
			if leaked != tt.wantLeak {
				t.Fatalf("password sent = %v, want %v (err %v)", leaked, tt.wantLeak, err)
			}
			if !tt.wantLeak {
				checkOutcome(t, target, err, ReasonAuthMethodRejected)
			}
		})
	}
}

// fishingServer answers 'N' to SSLRequest and the auth request ask to a StartupMessage, on
// each connection of one attempt (prefer makes two); it reports everything the client sent
// after the auth request.
func fishingServer(t *testing.T, ask pgproto3.BackendMessage) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 1)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				got <- ""
				return
			}
			if rest, ok := fish(conn, ask); ok {
				got <- rest
				return
			}
		}
	}()
	return l.Addr().String(), got
}

// fish runs one connection of fishingServer; ok is false when it ended before the auth request.
func fish(conn net.Conn, ask pgproto3.BackendMessage) (string, bool) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	be := pgproto3.NewBackend(conn, conn)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return "", false
		}
		if _, ok := msg.(*pgproto3.SSLRequest); ok {
			_, _ = conn.Write([]byte{'N'})
			continue
		}
		break
	}
	be.Send(ask)
	_ = be.Flush()
	var rest []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		rest = append(rest, buf[:n]...)
		if err != nil {
			break
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "nope"})
		_ = be.Flush()
	}
	return string(rest), true
}

// connect opens and closes one connection; it reports whether the connection used TLS.
func connect(t *testing.T, target Target) (bool, error) {
	t.Helper()
	cfg, err := ConnConfig(target)
	if err != nil {
		t.Fatalf("ConnConfig: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "select ssl::text from pg_stat_ssl where pid = pg_backend_pid()").ReadAll()
	if err != nil {
		return false, err
	}
	return string(res[0].Rows[0][0]) == "true", nil
}

func checkOutcome(t *testing.T, target Target, err error, wantReason string) {
	t.Helper()
	if wantReason == "" {
		if err != nil {
			t.Fatalf("connect: %v (%+v)", err, Classify(err, target))
		}
		return
	}
	if err == nil {
		t.Fatalf("connected, want %s", wantReason)
	}
	f := Classify(err, target)
	if f.Reason != wantReason {
		t.Fatalf("reason %s (%s), want %s; err: %v", f.Reason, f.Message, wantReason, err)
	}
	if target.Password != "" && strings.Contains(f.Message, target.Password) {
		t.Fatalf("message contains the password: %q", f.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) && wantReason != ReasonTimeout {
		t.Fatalf("timed out: %v", err)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
