package controllers

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/config"
)

// upstreamCredentials are read from the user's credentials Secret.
type upstreamCredentials struct {
	Username string
	Password string
}

// poolerConfig renders the pooler's config file: upstream credentials, the per-replica pool size
// (planBudget's) and the verifiers of the enabled keys (never a plaintext key). Keys are sorted by
// name so the output is stable.
func poolerConfig(pool *poolingv1alpha1.ConnectionPool, creds upstreamCredentials, keys []keyMaterial, poolSize int32) (*config.Config, error) {
	cfg := poolerConfigBase(pool)
	cfg.Pool.Size = int(poolSize)
	cfg.Upstream.User, cfg.Upstream.Password = creds.Username, creds.Password
	cfg.Keys = []config.Key{}
	for _, km := range keys {
		if km.Disabled {
			continue
		}
		current, err := verifierFor(km.Key, km.Salt, km.Iterations)
		if err != nil {
			return nil, fmt.Errorf("api key %s: %w", km.Name, err)
		}
		k := config.Key{Name: km.Name, Verifiers: []config.Verifier{current}}
		if km.Previous != nil {
			k.Verifiers = append(k.Verifiers, *km.Previous)
		}
		cfg.Keys = append(cfg.Keys, k)
	}
	slices.SortFunc(cfg.Keys, func(a, b config.Key) int { return strings.Compare(a.Name, b.Name) })
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rendered pooler config is invalid: %w", err)
	}
	return &cfg, nil
}

// poolerConfigBase is the pooler config of a pool without credentials and keys: everything the
// spec decides (the pool size as in steady state).
func poolerConfigBase(pool *poolingv1alpha1.ConnectionPool) config.Config {
	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: fmt.Sprintf(":%d", PostgresPort), Admin: fmt.Sprintf(":%d", AdminPort)}
	if pool.HTTPEnabled() {
		cfg.Listen.HTTP = fmt.Sprintf(":%d", HTTPPort)
	}
	if pool.TLSEnabled() {
		cfg.TLS = &config.TLS{
			CertFile: path.Join(tlsMountDir, corev1.TLSCertKey),
			KeyFile:  path.Join(tlsMountDir, corev1.TLSPrivateKeyKey),
		}
	} else {
		// tls.mode Disabled: TLS is terminated in front of the pooler (or the user accepts
		// plaintext); keys then arrive over plain ws:// and HTTP, which the pooler otherwise
		// refuses. Wire-protocol clients still authenticate with SCRAM.
		cfg.AllowCleartextWithoutTLS = true
	}
	cfg.Database = pool.Spec.Upstream.Database
	cfg.Upstream = config.Upstream{
		Host:     pool.Spec.Upstream.Host,
		Port:     int(pool.UpstreamPort()),
		Database: pool.Spec.Upstream.Database,
		SSLMode:  string(pool.UpstreamSSLMode()),
	}
	if pool.Spec.Upstream.CASecret != nil {
		cfg.Upstream.CAFile = path.Join(upstreamCAMountDir, "ca.crt")
	}
	p := pool.Spec.Pool
	cfg.Pool.Mode = string(pool.PoolMode())
	cfg.Pool.Size = int(pool.PoolSizePerReplica())
	cfg.Pool.MaxClientConnections = int(pool.MaxClientConnections())
	cfg.Pool.QueryWaitTimeout.Duration = poolingv1alpha1.DurationOr(p.QueryWaitTimeout, poolingv1alpha1.DefaultQueryWaitTimeout)
	cfg.Pool.IdleTransactionTimeout.Duration = poolingv1alpha1.DurationOr(p.IdleTransactionTimeout, poolingv1alpha1.DefaultIdleTransactionTimeout)
	cfg.Pool.ServerLifetime.Duration = poolingv1alpha1.DurationOr(p.ServerLifetime, poolingv1alpha1.DefaultServerLifetime)
	cfg.Paused = pool.Spec.Paused
	cfg.HTTP.Enabled = pool.HTTPEnabled()
	cfg.HTTP.Cache = config.Cache{
		Enabled:    pool.Spec.HTTP.Cache.Enabled,
		DefaultTTL: config.Duration{Duration: poolingv1alpha1.DurationOr(pool.Spec.HTTP.Cache.DefaultTTL, 0)},
		MaxBytes:   pool.CacheMaxBytes(),
	}
	return cfg
}

// configSecret is the <pool>-pooler-config Secret mounted into the pooler pods.
func configSecret(pool *poolingv1alpha1.ConnectionPool, cfg *config.Config) (*corev1.Secret, error) {
	data, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal pooler config: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      configSecretName(pool),
			Namespace: pool.Namespace,
			Labels:    childLabels(pool, componentConfig),
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{config.FileName: data, decoySecretKey: []byte(cfg.Auth.DecoySecret)},
	}, nil
}

// appSecret is the <pool>-<key> Secret apps mount with envFrom: the key, ready-made connection
// strings and the libpq variables. clientCA is the CA that signed the pooler's certificate
// (nil when TLS is off or the user's TLS Secret carries none).
func appSecret(pool *poolingv1alpha1.ConnectionPool, km keyMaterial, clientCA []byte) *corev1.Secret {
	host := serviceHost(pool)
	sslMode := "disable"
	if pool.TLSEnabled() {
		sslMode = "require"
	}
	data := map[string][]byte{
		appSecretAPIKey: []byte(km.Key),
		"DATABASE_URL":  []byte(databaseURL(pool, km, host, sslMode)),
		"PGHOST":        []byte(host),
		"PGPORT":        []byte(strconv.Itoa(PostgresPort)),
		"PGDATABASE":    []byte(pool.Spec.Upstream.Database),
		"PGUSER":        []byte(km.Name),
		"PGPASSWORD":    []byte(km.Key),
		"PGSSLMODE":     []byte(sslMode),
	}
	if pool.HTTPEnabled() {
		data["HTTP_URL"] = []byte(httpURL(pool, host))
		if u, ok := accelerateURL(pool, km, host); ok {
			data["ACCELERATE_URL"] = []byte(u)
		}
	}
	if ext := pool.Spec.Service.ExternalHost; ext != "" {
		data["EXTERNAL_DATABASE_URL"] = []byte(databaseURL(pool, km, ext, sslMode))
		if pool.HTTPEnabled() {
			data["EXTERNAL_HTTP_URL"] = []byte(httpURL(pool, ext))
			if u, ok := accelerateURL(pool, km, ext); ok {
				data["EXTERNAL_ACCELERATE_URL"] = []byte(u)
			}
		}
	}
	if pool.TLSEnabled() && len(clientCA) > 0 {
		data["ca.crt"] = clientCA
	}
	labels := childLabels(pool, componentAPIKey)
	labels[labelAPIKey] = km.Name
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        appSecretName(pool, km.Name),
			Namespace:   pool.Namespace,
			Labels:      labels,
			Annotations: keyAnnotations(km),
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

func databaseURL(pool *poolingv1alpha1.ConnectionPool, km keyMaterial, host, sslMode string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(km.Name, km.Key),
		Host:     net.JoinHostPort(host, strconv.Itoa(PostgresPort)),
		Path:     "/" + pool.Spec.Upstream.Database,
		RawQuery: "sslmode=" + sslMode,
	}
	return u.String()
}

func httpURL(pool *poolingv1alpha1.ConnectionPool, host string) string {
	scheme := "http"
	if pool.TLSEnabled() {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/sql", scheme, net.JoinHostPort(host, strconv.Itoa(HTTPPort)))
}

// accelerateURL is the Prisma Accelerate URL (Prisma 7 `accelerateUrl`) of the pool's HTTP
// endpoint: prisma://<host>:<http port>/?api_key=<key>. Prisma's client always speaks https to a
// prisma:// URL, and to a prisma+postgres:// URL too unless the host is localhost/127.0.0.1, so
// with TLS Disabled no URL of a cluster host would work: there is none (ok false). Local
// development over a port-forward uses prisma+postgres://localhost:<port>/?api_key=<key>.
func accelerateURL(pool *poolingv1alpha1.ConnectionPool, km keyMaterial, host string) (string, bool) {
	if !pool.TLSEnabled() {
		return "", false
	}
	u := url.URL{
		Scheme:   "prisma",
		Host:     net.JoinHostPort(host, strconv.Itoa(HTTPPort)),
		Path:     "/",
		RawQuery: url.Values{"api_key": {km.Key}}.Encode(),
	}
	return u.String(), true
}
