package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults the API server fills in; the helpers below fall back to them too, so objects built
// in Go without defaulting (tests, older clients) behave the same.
const (
	DefaultReplicas               int32 = 2
	DefaultUpstreamPort           int32 = 5432
	DefaultMaxUpstreamConnections int32 = 20
	DefaultMaxClientConnections   int32 = 10000
	DefaultQueryWaitTimeout             = 30 * time.Second
	DefaultIdleTransactionTimeout       = 60 * time.Second
	DefaultServerLifetime               = time.Hour
	DefaultGracePeriod                  = time.Hour
	DefaultCacheMaxBytes          int64 = 64 << 20
)

// DesiredReplicas is spec.replicas with its default.
func (p *ConnectionPool) DesiredReplicas() int32 {
	if p.Spec.Replicas == nil {
		return DefaultReplicas
	}
	return *p.Spec.Replicas
}

// MaxUpstreamConnectionsOrDefault is spec.pool.maxUpstreamConnections with its default.
func (p *ConnectionPool) MaxUpstreamConnectionsOrDefault() int32 {
	if p.Spec.Pool.MaxUpstreamConnections <= 0 {
		return DefaultMaxUpstreamConnections
	}
	return p.Spec.Pool.MaxUpstreamConnections
}

// PoolSizePerReplica splits the upstream budget across the replicas with one replica's share
// held back, so that one pod more than the replicas (the pod a rollout or an eviction starts
// while the one it replaces drains) still fits: floor(maxUpstreamConnections / (replicas + 1)).
// The API refuses replicas >= maxUpstreamConnections, so it is at least 1. With zero replicas it
// is the whole budget.
func (p *ConnectionPool) PoolSizePerReplica() int32 {
	budget := p.MaxUpstreamConnectionsOrDefault()
	replicas := p.DesiredReplicas()
	if replicas <= 0 {
		return budget
	}
	return max(1, budget/(replicas+1))
}

// PoolMode is spec.pool.mode with its default.
func (p *ConnectionPool) PoolMode() PoolMode {
	if p.Spec.Pool.Mode == "" {
		return PoolModeTransaction
	}
	return p.Spec.Pool.Mode
}

// MaxClientConnections is spec.pool.maxClientConnections with its default.
func (p *ConnectionPool) MaxClientConnections() int32 {
	if p.Spec.Pool.MaxClientConnections <= 0 {
		return DefaultMaxClientConnections
	}
	return p.Spec.Pool.MaxClientConnections
}

// UpstreamPort is spec.upstream.port with its default.
func (p *ConnectionPool) UpstreamPort() int32 {
	if p.Spec.Upstream.Port == 0 {
		return DefaultUpstreamPort
	}
	return p.Spec.Upstream.Port
}

// UpstreamSSLMode is spec.upstream.sslMode with its default.
func (p *ConnectionPool) UpstreamSSLMode() SSLMode {
	if p.Spec.Upstream.SSLMode == "" {
		return "require"
	}
	return p.Spec.Upstream.SSLMode
}

// UsernameKeyOrDefault is the credentials Secret's user name key with its default.
func (r CredentialsSecretRef) UsernameKeyOrDefault() string {
	if r.UsernameKey == "" {
		return "username"
	}
	return r.UsernameKey
}

// PasswordKeyOrDefault is the credentials Secret's password key with its default.
func (r CredentialsSecretRef) PasswordKeyOrDefault() string {
	if r.PasswordKey == "" {
		return "password"
	}
	return r.PasswordKey
}

// KeyOrDefault is the CA Secret's key with its default.
func (r SecretKeyRef) KeyOrDefault() string {
	if r.Key == "" {
		return "ca.crt"
	}
	return r.Key
}

// TLSMode is spec.tls.mode with its default.
func (p *ConnectionPool) TLSMode() TLSMode {
	if p.Spec.TLS.Mode == "" {
		return TLSGenerated
	}
	return p.Spec.TLS.Mode
}

// TLSEnabled reports whether clients talk TLS to the pooler.
func (p *ConnectionPool) TLSEnabled() bool { return p.TLSMode() != TLSDisabled }

// HTTPEnabled is spec.http.enabled with its default (true).
func (p *ConnectionPool) HTTPEnabled() bool {
	return p.Spec.HTTP.Enabled == nil || *p.Spec.HTTP.Enabled
}

// RegionAffinity is spec.placement.regionAffinity with its default.
func (p *ConnectionPool) RegionAffinity() RegionAffinity {
	if p.Spec.Placement.RegionAffinity == "" {
		return RegionAffinityRequired
	}
	return p.Spec.Placement.RegionAffinity
}

// CacheMaxBytes is spec.http.cache.maxBytes with its default.
func (p *ConnectionPool) CacheMaxBytes() int64 {
	if q := p.Spec.HTTP.Cache.MaxBytes; q != nil && q.Value() > 0 {
		return q.Value()
	}
	return DefaultCacheMaxBytes
}

// GracePeriodOrDefault is the key's grace period with its default.
func (k APIKey) GracePeriodOrDefault() time.Duration {
	return durationOr(k.GracePeriod, DefaultGracePeriod)
}

// DurationOr returns d, or def when d is unset.
func DurationOr(d *metav1.Duration, def time.Duration) time.Duration { return durationOr(d, def) }

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// QuantityPtr is a helper for building specs in Go.
func QuantityPtr(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
