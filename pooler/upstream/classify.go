package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Reasons a connection attempt failed (the operator's UpstreamReachable condition reasons).
const (
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonAuthMethodRejected: the server asked for an authentication method RequireAuth does
	// not allow (a cleartext or MD5 password request where SCRAM is required) — a server
	// without SCRAM verifiers, or someone in the middle fishing for the password.
	ReasonAuthMethodRejected = "AuthMethodRejected"
	ReasonDatabaseNotFound   = "DatabaseNotFound"
	ReasonUnreachable        = "Unreachable"
	ReasonTimeout            = "Timeout"
	ReasonTLSFailed          = "TLSFailed"
	ReasonUpstreamError      = "UpstreamError"
)

// Failure explains a failed connection attempt: a reason from the list above and a message that
// names the cause (SQLSTATE, network or TLS error) and never contains the password.
type Failure struct {
	Reason  string
	Message string
}

// Classify explains err, returned by a connection attempt to t.
func Classify(err error, t Target) Failure {
	addr := t.Addr()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return Failure{ReasonAuthenticationFailed,
				fmt.Sprintf("authentication failed for user %q at %s (SQLSTATE %s)", t.User, addr, pgErr.Code)}
		case "3D000":
			return Failure{ReasonDatabaseNotFound,
				fmt.Sprintf("database %q does not exist at %s (SQLSTATE %s)", t.Database, addr, pgErr.Code)}
		}
		return Failure{ReasonUpstreamError,
			fmt.Sprintf("upstream %s refused the connection: %s (SQLSTATE %s)", addr, pgErr.Message, pgErr.Code)}
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return Failure{ReasonTimeout, fmt.Sprintf("no answer from %s within the timeout", addr)}
	}
	// Before TLS: with sslMode prefer the refused TLS attempt is listed first.
	if strings.Contains(err.Error(), "authentication method requirement") {
		requireAuth := t.RequireAuth
		if requireAuth == "" {
			requireAuth = DefaultRequireAuth
		}
		return Failure{ReasonAuthMethodRejected, fmt.Sprintf("%s asked for an authentication method that requireAuth %q refuses "+
			"(the server must use SCRAM, or something between is asking for the password): %s", addr, requireAuth, authMethodAsked(err))}
	}
	if msg, ok := tlsFailure(err); ok {
		return Failure{ReasonTLSFailed, fmt.Sprintf("TLS with %s failed (sslMode %s): %s", addr, t.SSLMode, msg)}
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return Failure{ReasonUnreachable, fmt.Sprintf("cannot reach %s: %v", addr, netErr.Err)}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return Failure{ReasonUnreachable, fmt.Sprintf("cannot resolve %s: %s", t.Host, dnsErr.Err)}
	}
	return Failure{ReasonUnreachable, fmt.Sprintf("cannot connect to %s", addr)}
}

// tlsFailure reports whether err is a TLS failure and describes it without the connection
// string pgconn puts in its errors.
func tlsFailure(err error) (string, bool) {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		cert    *certificateError
		record  tls.RecordHeaderError
		alert   tls.AlertError
	)
	switch {
	case errors.As(err, &unknown):
		return "certificate signed by an unknown authority (wrong CA?)", true
	case errors.As(err, &host):
		return host.Error(), true
	case errors.As(err, &invalid):
		return invalid.Error(), true
	case errors.As(err, &verify), errors.As(err, &cert):
		return "certificate verification failed", true
	case errors.As(err, &record):
		return "the server does not speak TLS", true
	case errors.As(err, &alert):
		return "the server refused the handshake: " + alert.Error(), true
	case strings.Contains(err.Error(), "server refused TLS connection"):
		return "the server does not offer TLS", true
	}
	return "", false
}

// authMethodAsked extracts libpq's "server requested X authentication" from a require_auth
// failure.
func authMethodAsked(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "server "); i >= 0 {
		return msg[i:]
	}
	return "authentication method not allowed"
}
