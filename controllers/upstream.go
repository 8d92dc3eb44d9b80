package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// Reasons of the UpstreamReachable condition.
const (
	ReasonConnected              = "Connected"
	ReasonAuthenticationFailed   = "AuthenticationFailed"
	ReasonDatabaseNotFound       = "DatabaseNotFound"
	ReasonUnreachable            = "Unreachable"
	ReasonTimeout                = "Timeout"
	ReasonTLSFailed              = "TLSFailed"
	ReasonUpstreamError          = "UpstreamError"
	ReasonCredentialsUnavailable = "CredentialsUnavailable"
	ReasonChecking               = "Checking"
)

// upstreamTarget is everything a connection attempt needs.
type upstreamTarget struct {
	Host     string
	Port     int32
	Database string
	SSLMode  string
	CA       []byte
	Creds    upstreamCredentials
}

// upstreamResult is the outcome of one attempt; Message never contains the password.
type upstreamResult struct {
	Reachable bool
	Reason    string
	Message   string
}

// upstreamChecker makes one attempt at a time; upstreamChecks (upstream_checks.go) decides when.
type upstreamChecker struct {
	Timeout time.Duration
}

func newUpstreamChecker() *upstreamChecker {
	return &upstreamChecker{Timeout: 5 * time.Second}
}

func (t upstreamTarget) hash() [32]byte {
	h := sha256.New()
	for _, s := range []string{t.Host, strconv.Itoa(int(t.Port)), t.Database, t.SSLMode, string(t.CA), t.Creds.Username, t.Creds.Password} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// try opens one connection with the configured credentials and TLS mode, then closes it.
func (u *upstreamChecker) try(ctx context.Context, t upstreamTarget) upstreamResult {
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	cfg, cleanup, err := connConfig(t, u.Timeout)
	if err != nil {
		return upstreamResult{Reason: ReasonTLSFailed, Message: "cannot build connection settings: " + err.Error()}
	}
	defer cleanup()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return classifyConnectError(err, t)
	}
	_ = conn.Close(ctx)
	return upstreamResult{Reachable: true, Reason: ReasonConnected,
		Message: fmt.Sprintf("connected to %s as %q", net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))), t.Creds.Username)}
}

// connConfig builds the pgconn config without ever putting the password into a string that an
// error could echo: it is set on the parsed config.
func connConfig(t upstreamTarget, timeout time.Duration) (*pgconn.Config, func(), error) {
	q := url.Values{}
	q.Set("sslmode", t.SSLMode)
	q.Set("connect_timeout", strconv.Itoa(max(1, int(timeout.Seconds()))))
	q.Set("application_name", "edgepool-operator")
	cleanup := func() {}
	if len(t.CA) > 0 && (t.SSLMode == "verify-ca" || t.SSLMode == "verify-full") {
		f, err := os.CreateTemp("", "edgepool-upstream-ca-*.crt")
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.Remove(f.Name()) }
		if _, err := f.Write(t.CA); err != nil {
			f.Close()
			cleanup()
			return nil, func() {}, err
		}
		f.Close()
		q.Set("sslrootcert", f.Name())
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(t.Creds.Username),
		Host:     net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))),
		Path:     "/" + t.Database,
		RawQuery: q.Encode(),
	}
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	cfg.Password = t.Creds.Password // fallbacks (sslmode prefer) share the config's password
	return cfg, cleanup, nil
}

// classifyConnectError maps a failed attempt to a condition reason and a message that names the
// cause (SQLSTATE, network error) but never the password.
func classifyConnectError(err error, t upstreamTarget) upstreamResult {
	addr := net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return upstreamResult{Reason: ReasonAuthenticationFailed,
				Message: fmt.Sprintf("authentication failed for user %q at %s (SQLSTATE %s)", t.Creds.Username, addr, pgErr.Code)}
		case "3D000":
			return upstreamResult{Reason: ReasonDatabaseNotFound,
				Message: fmt.Sprintf("database %q does not exist at %s (SQLSTATE %s)", t.Database, addr, pgErr.Code)}
		}
		return upstreamResult{Reason: ReasonUpstreamError,
			Message: fmt.Sprintf("upstream %s refused the connection: %s (SQLSTATE %s)", addr, pgErr.Message, pgErr.Code)}
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return upstreamResult{Reason: ReasonTimeout, Message: fmt.Sprintf("no answer from %s within the timeout", addr)}
	}
	if isTLSError(err) {
		return upstreamResult{Reason: ReasonTLSFailed, Message: fmt.Sprintf("TLS with %s failed (sslmode %s)", addr, t.SSLMode)}
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return upstreamResult{Reason: ReasonUnreachable, Message: fmt.Sprintf("cannot reach %s: %v", addr, netErr.Err)}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return upstreamResult{Reason: ReasonUnreachable, Message: fmt.Sprintf("cannot resolve %s: %s", t.Host, dnsErr.Err)}
	}
	return upstreamResult{Reason: ReasonUnreachable, Message: fmt.Sprintf("cannot connect to %s", addr)}
}

func isTLSError(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var record tls.RecordHeaderError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &record)
}

// targetFor collects the upstream target of a pool.
func targetFor(pool *poolingv1alpha1.ConnectionPool, creds upstreamCredentials, ca []byte) upstreamTarget {
	return upstreamTarget{
		Host:     pool.Spec.Upstream.Host,
		Port:     pool.UpstreamPort(),
		Database: pool.Spec.Upstream.Database,
		SSLMode:  string(pool.UpstreamSSLMode()),
		CA:       ca,
		Creds:    creds,
	}
}
