package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/upstream"
)

// Reasons of the UpstreamReachable condition. The failure reasons come from pooler/upstream,
// which the pooler uses too.
const (
	ReasonConnected              = "Connected"
	ReasonAuthenticationFailed   = upstream.ReasonAuthenticationFailed
	ReasonAuthMethodRejected     = upstream.ReasonAuthMethodRejected
	ReasonDatabaseNotFound       = upstream.ReasonDatabaseNotFound
	ReasonUnreachable            = upstream.ReasonUnreachable
	ReasonTimeout                = upstream.ReasonTimeout
	ReasonTLSFailed              = upstream.ReasonTLSFailed
	ReasonUpstreamError          = upstream.ReasonUpstreamError
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
	target := t.connTarget(u.Timeout)
	cfg, err := upstream.ConnConfig(target)
	if err != nil {
		return upstreamResult{Reason: ReasonTLSFailed, Message: "cannot build connection settings: " + err.Error()}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		f := upstream.Classify(err, target)
		return upstreamResult{Reason: f.Reason, Message: f.Message}
	}
	_ = conn.Close(ctx)
	return upstreamResult{Reachable: true, Reason: ReasonConnected,
		Message: fmt.Sprintf("connected to %s as %q", target.Addr(), t.Creds.Username)}
}

// connTarget is the connection the pooler will make (same TLS and require_auth), with the CA
// in memory.
func (t upstreamTarget) connTarget(timeout time.Duration) upstream.Target {
	return upstream.Target{Host: t.Host, Port: int(t.Port), Database: t.Database, User: t.Creds.Username,
		Password: t.Creds.Password, SSLMode: t.SSLMode, CA: t.CA, ConnectTimeout: timeout,
		ApplicationName: "edgepool-operator"}
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
