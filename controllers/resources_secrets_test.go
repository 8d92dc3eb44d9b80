package controllers

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/config"
)

func TestPoolSizePerReplica(t *testing.T) {
	for _, tt := range []struct{ budget, replicas, want int32 }{
		// floor(budget / (replicas + 1)): one replica's share held back for rollouts.
		{20, 2, 6}, {20, 3, 5}, {20, 1, 10}, {20, 5, 3}, {20, 19, 1}, {2, 1, 1}, {20, 0, 20},
	} {
		p := samplePool()
		p.Spec.Pool.MaxUpstreamConnections = tt.budget
		p.Spec.Replicas = ptr.To(tt.replicas)
		if got := p.PoolSizePerReplica(); got != tt.want {
			t.Errorf("budget %d replicas %d: got %d, want %d", tt.budget, tt.replicas, got, tt.want)
		}
	}
}

func TestPoolerConfig(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	creds := upstreamCredentials{Username: "app", Password: "s3cret"}
	tests := []struct {
		name   string
		mutate func(p *poolingv1alpha1.ConnectionPool)
		check  func(t *testing.T, cfg *config.Config, keys []keyMaterial)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, cfg *config.Config, keys []keyMaterial) {
				if cfg.Pool.Size != 10 || cfg.Database != "shop" || cfg.Upstream.Password != "s3cret" || cfg.Upstream.SSLMode != "require" {
					t.Fatalf("config %+v", cfg)
				}
				if cfg.TLS == nil || cfg.TLS.CertFile != "/etc/edgepool/tls/tls.crt" || cfg.Listen.HTTP != ":8443" {
					t.Fatalf("tls/listen %+v %+v", cfg.TLS, cfg.Listen)
				}
				if cfg.AllowCleartextWithoutTLS {
					t.Fatal("cleartext keys allowed without TLS while the pooler serves TLS")
				}
				if len(cfg.Keys) != 2 || cfg.Keys[0].Name != "ci" || cfg.Keys[1].Name != "default" {
					t.Fatalf("keys must be sorted by name: %+v", cfg.Keys)
				}
			},
		},
		{
			name:   "disabled key is left out",
			mutate: func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Disabled = true },
			check: func(t *testing.T, cfg *config.Config, _ []keyMaterial) {
				if len(cfg.Keys) != 1 || cfg.Keys[0].Name != "ci" {
					t.Fatalf("keys %+v", cfg.Keys)
				}
			},
		},
		{
			name: "tls off, paused, upstream CA, session mode",
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.TLS.Mode = poolingv1alpha1.TLSDisabled
				p.Spec.Paused = true
				p.Spec.Pool.Mode = poolingv1alpha1.PoolModeSession
				p.Spec.Upstream.SSLMode = "verify-full"
				p.Spec.Upstream.CASecret = &poolingv1alpha1.SecretKeyRef{Name: "ca"}
			},
			check: func(t *testing.T, cfg *config.Config, _ []keyMaterial) {
				if cfg.TLS != nil || !cfg.Paused || cfg.Pool.Mode != "session" || cfg.Upstream.CAFile != "/etc/edgepool/upstream-ca/ca.crt" {
					t.Fatalf("config %+v", cfg)
				}
				if !cfg.AllowCleartextWithoutTLS { // TLS is terminated in front of the pooler
					t.Fatal("tls.mode Disabled must let keys arrive over plain ws:// and HTTP")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			if tt.mutate != nil {
				tt.mutate(p)
			}
			keys, _ := planKeys(p, nil, now, countingKeys())
			cfg, err := poolerConfig(p, creds, keys, 10)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg, keys)
			secret, err := configSecret(p, cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw := string(secret.Data[config.FileName])
			for _, k := range keys {
				if strings.Contains(raw, k.Key) {
					t.Fatalf("config Secret contains the plaintext key %s", k.Name)
				}
			}
			if _, err := config.Parse(secret.Data[config.FileName]); err != nil {
				t.Fatalf("pooler cannot parse the rendered config: %v", err)
			}
		})
	}
}

func TestAppSecret(t *testing.T) {
	p := samplePool()
	p.Spec.Service.ExternalHost = "db.example.com"
	keys, _ := planKeys(p, nil, time.Now(), countingKeys())
	s := appSecret(p, keys[0], []byte("CA PEM"))
	d := func(k string) string { return string(s.Data[k]) }

	u, err := url.Parse(d("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	if u.User.Username() != "default" || pass != keys[0].Key || u.Host != "shop-pooler.apps.svc:5432" || u.Path != "/shop" || u.Query().Get("sslmode") != "require" {
		t.Fatalf("DATABASE_URL %s", d("DATABASE_URL"))
	}
	want := map[string]string{
		"API_KEY": keys[0].Key, "HTTP_URL": "https://shop-pooler.apps.svc:8443/sql", "PGHOST": "shop-pooler.apps.svc",
		"PGPORT": "5432", "PGDATABASE": "shop", "PGUSER": "default", "PGPASSWORD": keys[0].Key, "PGSSLMODE": "require",
		"ca.crt": "CA PEM", "EXTERNAL_HTTP_URL": "https://db.example.com:8443/sql",
	}
	for k, v := range want {
		if d(k) != v {
			t.Errorf("%s = %q, want %q", k, d(k), v)
		}
	}
	if !strings.Contains(d("EXTERNAL_DATABASE_URL"), "@db.example.com:5432/shop") {
		t.Errorf("EXTERNAL_DATABASE_URL %s", d("EXTERNAL_DATABASE_URL"))
	}

	p.Spec.TLS.Mode = poolingv1alpha1.TLSDisabled
	s = appSecret(p, keys[0], []byte("CA PEM"))
	if d("PGSSLMODE") != "disable" || !strings.HasPrefix(d("HTTP_URL"), "http://") || s.Data["ca.crt"] != nil {
		t.Fatalf("TLS off: %s %s", d("PGSSLMODE"), d("HTTP_URL"))
	}
}

// TestAccelerateURL: the app Secret carries Prisma's accelerateUrl when HTTP is on, in prisma://
// form (always https, hence only with TLS), for the in-cluster and the external host.
func TestAccelerateURL(t *testing.T) {
	key := keyMaterial{Name: "default", Key: "ep_abc+/="}
	tests := []struct {
		name         string
		mutate       func(p *poolingv1alpha1.ConnectionPool)
		want         string // "" = absent
		wantExternal string
	}{
		{"TLS generated", func(*poolingv1alpha1.ConnectionPool) {}, "prisma://shop-pooler.apps.svc:8443/?api_key=ep_abc%2B%2F%3D", ""},
		{"external host", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Service.ExternalHost = "db.example.com" },
			"prisma://shop-pooler.apps.svc:8443/?api_key=ep_abc%2B%2F%3D", "prisma://db.example.com:8443/?api_key=ep_abc%2B%2F%3D"},
		{"TLS from a Secret", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.TLS = poolingv1alpha1.TLSSettings{Mode: poolingv1alpha1.TLSSecret, SecretName: "cert"}
		}, "prisma://shop-pooler.apps.svc:8443/?api_key=ep_abc%2B%2F%3D", ""},
		{"TLS disabled: Prisma would speak https to a plaintext port", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.TLS.Mode = poolingv1alpha1.TLSDisabled
			p.Spec.Service.ExternalHost = "db.example.com"
		}, "", ""},
		{"HTTP off", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.HTTP.Enabled = ptr.To(false) }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			tt.mutate(p)
			s := appSecret(p, key, nil)
			if got := string(s.Data["ACCELERATE_URL"]); got != tt.want {
				t.Errorf("ACCELERATE_URL %q, want %q", got, tt.want)
			}
			if got := string(s.Data["EXTERNAL_ACCELERATE_URL"]); got != tt.wantExternal {
				t.Errorf("EXTERNAL_ACCELERATE_URL %q, want %q", got, tt.wantExternal)
			}
			if tt.want != "" {
				u, err := url.Parse(tt.want)
				if err != nil || u.Query().Get("api_key") != key.Key {
					t.Errorf("api_key does not round-trip: %v %q", err, u.Query().Get("api_key"))
				}
			}
		})
	}
}
