package localenv

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// LocalURL rewrites a URL from an app Secret (DATABASE_URL, HTTP_URL), which names the
// in-cluster Service, to the local forwarder standing in for that Service port: only the host
// and port change. The in-cluster name is what the pooler's certificate is for, so TLS
// verification against it needs that name kept as the TLS server name (see VerifyFullDSN).
func LocalURL(raw, localAddr string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse URL from the app Secret: %w", err)
	}
	u.Host = localAddr
	return u.String(), nil
}

// VerifyFullDSN turns a DATABASE_URL into a libpq URL that verifies the pooler's certificate
// for its in-cluster host name while connecting to the local forwarder: the host stays, the
// port becomes the forwarder's, and hostaddr=127.0.0.1 tells libpq where to connect (psql
// checks the certificate against host, not hostaddr).
func VerifyFullDSN(raw, localAddr, caFile string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(localAddr)
	if err != nil {
		return "", err
	}
	u.Host = net.JoinHostPort(u.Hostname(), port)
	q := u.Query()
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", caFile)
	q.Set("hostaddr", "127.0.0.1")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Redact hides the password of a connection URL for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.Replace(u.String(), "xxxxx", "…", 1)
}
