// Package upstream turns the settings of the PostgreSQL server behind a pool into a pgconn
// connection config, and explains failed connection attempts. The pooler connects with it and
// the operator's reachability check tries the same config, so both see the upstream alike.
//
// TLS follows libpq's sslmode with the CA held in memory (no file: the operator's root
// filesystem is read-only), and the password is never offered to a server that asks for an
// authentication method outside RequireAuth (libpq's require_auth; SCRAM unless configured
// otherwise), so a man in the middle who strips TLS cannot ask for it in cleartext.
package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// SSL modes (libpq's sslmode).
const (
	SSLDisable    = "disable"
	SSLPrefer     = "prefer"
	SSLRequire    = "require"
	SSLVerifyCA   = "verify-ca"
	SSLVerifyFull = "verify-full"
)

// DefaultRequireAuth is the authentication method the upstream must use when RequireAuth is
// empty: SCRAM never shows the password to the server.
const DefaultRequireAuth = "scram-sha-256"

// AnyAuth as RequireAuth accepts whatever method the server asks for (libpq's default).
const AnyAuth = "any"

// Target is everything one connection to the upstream needs.
type Target struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	// SSLMode is disable, prefer, require, verify-ca or verify-full. With a CA, require checks
	// the certificate chain as verify-ca does (as libpq does when a root certificate exists).
	SSLMode string
	// CA is the PEM bundle that verify-ca and verify-full trust; without it they trust the
	// system roots.
	CA []byte
	// RequireAuth is libpq's require_auth ("scram-sha-256", "scram-sha-256,md5", "!password",
	// …); empty means DefaultRequireAuth and AnyAuth lifts the restriction.
	RequireAuth string
	// ConnectTimeout bounds one connection attempt (TCP, TLS and authentication); 0: none.
	ConnectTimeout time.Duration
	// ApplicationName is shown in pg_stat_activity.
	ApplicationName string
}

// Addr is host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// CheckRequireAuth reports whether s is a valid RequireAuth.
func CheckRequireAuth(s string) error {
	if s == "" || s == AnyAuth {
		return nil
	}
	if _, err := pgconn.ParseConfig("postgres://localhost/?require_auth=" + url.QueryEscape(s)); err != nil {
		return fmt.Errorf("%q is not a libpq require_auth list (e.g. scram-sha-256, \"scram-sha-256,md5\", any)", s)
	}
	return nil
}

// ConnConfig builds the pgconn config for t. The password is set on the parsed config, never
// put in a string a parse error could echo, and errors name the setting, not its value.
func ConnConfig(t Target) (*pgconn.Config, error) {
	requireAuth := t.RequireAuth
	switch requireAuth {
	case "":
		requireAuth = DefaultRequireAuth
	case AnyAuth:
		requireAuth = ""
	}
	q := url.Values{}
	q.Set("sslmode", "disable") // TLS is set up below, from memory
	if requireAuth != "" {
		q.Set("require_auth", requireAuth)
	}
	if t.ApplicationName != "" {
		q.Set("application_name", t.ApplicationName)
	}
	u := url.URL{Scheme: "postgres", User: url.User(t.User), Host: t.Addr(), Path: "/" + t.Database, RawQuery: q.Encode()}
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && requireAuth != "" {
			return nil, fmt.Errorf("upstream: invalid requireAuth %q or connection settings", t.RequireAuth)
		}
		return nil, errors.New("upstream: invalid connection settings (host, port, database, user)")
	}
	cfg.Password = t.Password
	cfg.ConnectTimeout = t.ConnectTimeout
	tlsCfg, fallbackPlain, err := tlsConfig(t.SSLMode, t.Host, t.CA)
	if err != nil {
		return nil, err
	}
	cfg.TLSConfig = tlsCfg
	cfg.Fallbacks = nil
	if fallbackPlain { // prefer: try TLS, then plain TCP
		cfg.Fallbacks = []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}
	}
	return cfg, nil
}

// tlsConfig is the TLS client config of sslmode towards host, trusting the PEM bundle ca (the
// system roots when empty), and whether a plain connection may follow a failed TLS one.
func tlsConfig(mode, host string, ca []byte) (cfg *tls.Config, fallbackPlain bool, err error) {
	if mode == SSLDisable {
		return nil, false, nil
	}
	var roots *x509.CertPool
	if len(ca) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(ca) {
			return nil, false, errors.New("upstream: the CA bundle holds no PEM certificate")
		}
	}
	cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	if net.ParseIP(host) == nil {
		cfg.ServerName = host // SNI; verify-full also checks the certificate against it
	}
	switch mode {
	case SSLPrefer:
		cfg.InsecureSkipVerify = true // libpq's prefer: encryption without verification
		return cfg, true, nil
	case SSLRequire:
		if roots == nil {
			cfg.InsecureSkipVerify = true // libpq's require: encryption without verification
			return cfg, false, nil
		}
		fallthrough
	case SSLVerifyCA:
		// Check the chain but not the name: Go's verification always checks the name, so it is
		// switched off and done here instead (pgconn and libpq do the same). VerifyConnection
		// also runs on resumed sessions.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, roots)
		}
		return cfg, false, nil
	case SSLVerifyFull:
		cfg.RootCAs = roots
		cfg.ServerName = host
		return cfg, false, nil
	}
	return nil, false, fmt.Errorf("upstream: sslMode must be one of disable, prefer, require, verify-ca, verify-full; got %q", mode)
}

// verifyChain checks that the server's certificate chains to roots (nil: the system roots).
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return &certificateError{errors.New("the server sent no certificate")}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &certificateError{err}
	}
	return nil
}

// certificateError marks a failed verify-ca check, so Classify reports it as TLSFailed.
type certificateError struct{ err error }

func (e *certificateError) Error() string { return "verify server certificate: " + e.err.Error() }
func (e *certificateError) Unwrap() error { return e.err }
