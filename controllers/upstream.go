package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
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

// upstreamChecker tries the upstream with the pool's credentials and remembers the result for a
// while, so reconciles triggered by unrelated events do not each open a connection.
type upstreamChecker struct {
	Timeout time.Duration
	// RecheckReachable and RecheckUnreachable are how long a result stays fresh.
	RecheckReachable   time.Duration
	RecheckUnreachable time.Duration

	mu    sync.Mutex
	cache map[string]cachedResult // by pool namespace/name
}

type cachedResult struct {
	inputs  [32]byte // hash of the target, so a spec or credentials change re-checks at once
	result  upstreamResult
	checked time.Time
}

func newUpstreamChecker() *upstreamChecker {
	return &upstreamChecker{
		Timeout:            5 * time.Second,
		RecheckReachable:   time.Minute,
		RecheckUnreachable: 15 * time.Second,
		cache:              map[string]cachedResult{},
	}
}

// Check returns the fresh-enough result for the pool and when it goes stale.
func (u *upstreamChecker) Check(ctx context.Context, pool string, t upstreamTarget, now time.Time) (upstreamResult, time.Time) {
	inputs := t.hash()
	u.mu.Lock()
	c, ok := u.cache[pool]
	u.mu.Unlock()
	if ok && c.inputs == inputs {
		if stale := c.checked.Add(u.ttl(c.result)); now.Before(stale) {
			return c.result, stale
		}
	}
	res := u.try(ctx, t)
	u.mu.Lock()
	u.cache[pool] = cachedResult{inputs: inputs, result: res, checked: now}
	u.mu.Unlock()
	return res, now.Add(u.ttl(res))
}

// Forget drops a deleted pool's result.
func (u *upstreamChecker) Forget(pool string) {
	u.mu.Lock()
	delete(u.cache, pool)
	u.mu.Unlock()
}

func (u *upstreamChecker) ttl(r upstreamResult) time.Duration {
	if r.Reachable {
		return u.RecheckReachable
	}
	return u.RecheckUnreachable
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
