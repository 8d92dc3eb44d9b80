package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// restartOnly and live classify every leaf setting of Config by its JSON path. A new field must
// be added to one of them (and, if it is restart-only, to RestartSettings): the test fails
// otherwise, so the pooler's reload and the operator's restart hash cannot drift apart.
var (
	restartOnly = []string{"listen.postgres", "listen.http", "listen.admin", "tls", "database", "pool.mode", "http.enabled",
		"http.accelerate.enabled", "http.accelerate.maxTransactionTimeout", "http.accelerate.maxRequestBytes", "http.accelerate.maxBindValues",
		"http.readHeaderTimeout"}
	live = []string{
		"tls.certFile", "tls.keyFile",
		"upstream.host", "upstream.port", "upstream.database", "upstream.user", "upstream.password", "upstream.sslMode", "upstream.caFile",
		"upstream.requireAuth", "pool.maxAuthenticatingConnections", "auth.decoySecret", "auth.maxFailuresPerSource",
		"auth.failureWindow", "http.bodyReadTimeout", "http.maxInFlightPerKey",
		"pool.size", "pool.maxClientConnections", "pool.queryWaitTimeout", "pool.idleTransactionTimeout", "pool.serverLifetime",
		"pool.serverIdleTimeout", "pool.connectTimeout", "pool.healthCheckPeriod", "pool.authTimeout", "pool.shutdownTimeout",
		"pool.maxMessageBytes", "pool.preparedStatementsPerConn", "pool.preparedStatementBytes", "pool.clientStallTimeout", "pool.relayLoop",
		"keys", "paused", "allowCleartextWithoutTLS", "clientAuthMethod",
		"http.maxRequestBytes", "http.maxResponseBytes", "http.statementTimeout",
		"http.cache.enabled", "http.cache.defaultTTL", "http.cache.maxBytes",
	}
)

func TestEverySettingIsClassified(t *testing.T) {
	var leaves []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			path := strings.TrimPrefix(prefix+"."+name, ".")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				leaves = append(leaves, path) // presence is a setting of its own (tls on/off)
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() {
				walk(path, ft)
				continue
			}
			if f.Type.Kind() != reflect.Pointer {
				leaves = append(leaves, path)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	for _, l := range leaves {
		if !slices.Contains(restartOnly, l) && !slices.Contains(live, l) {
			t.Errorf("setting %q is neither restart-only nor live: classify it here (and in RestartSettings if restart-only)", l)
		}
	}
	for _, l := range append(slices.Clone(restartOnly), live...) {
		if !slices.Contains(leaves, l) {
			t.Errorf("classified setting %q does not exist", l)
		}
	}
}

// TestRestartSettings: changing a restart-only setting changes RestartSettings and is undone by
// KeepRestartSettings; changing a live one changes neither.
func TestRestartSettings(t *testing.T) {
	base := Defaults()
	base.TLS = &TLS{CertFile: "a.crt", KeyFile: "a.key"}
	base.HTTP.Enabled = true
	tests := []struct {
		name    string
		mutate  func(c *Config)
		restart string // "" = live
	}{
		{"listen", func(c *Config) { c.Listen.Postgres = ":6432" }, "listen"},
		{"tls off", func(c *Config) { c.TLS = nil }, "tls"},
		{"database", func(c *Config) { c.Database = "other" }, "database"},
		{"pool mode", func(c *Config) { c.Pool.Mode = ModeSession }, "pool.mode"},
		{"http off", func(c *Config) { c.HTTP.Enabled = false }, "http.enabled"},
		{"accelerate off", func(c *Config) { c.HTTP.Accelerate.Enabled = false }, "http.accelerate"},
		{"http header timeout", func(c *Config) { c.HTTP.ReadHeaderTimeout = Duration{time.Second} }, "http.readHeaderTimeout"},
		{"per-key HTTP cap", func(c *Config) { c.HTTP.MaxInFlightPerKey = 3 }, ""},
		{"failure budget", func(c *Config) { c.Auth.MaxFailuresPerSource = 3 }, ""},
		{"cache on", func(c *Config) { c.HTTP.Cache.Enabled = true }, ""},
		{"cache ttl", func(c *Config) { c.HTTP.Cache.DefaultTTL.Duration = 5e9 }, ""},
		{"upstream host", func(c *Config) { c.Upstream.Host = "db2" }, ""},
		{"upstream sslmode", func(c *Config) { c.Upstream.SSLMode = "verify-full" }, ""},
		{"pool size", func(c *Config) { c.Pool.Size = 3 }, ""},
		{"new certificate files", func(c *Config) { c.TLS = &TLS{CertFile: "b.crt", KeyFile: "b.key"} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := base
			next := base
			next.TLS = &TLS{CertFile: "a.crt", KeyFile: "a.key"}
			tt.mutate(&next)
			if same := next.RestartSettings() == running.RestartSettings(); same != (tt.restart == "") {
				t.Fatalf("RestartSettings equal=%v, want restart %q", same, tt.restart)
			}
			changed := next.KeepRestartSettings(&running)
			if tt.restart == "" && len(changed) != 0 || tt.restart != "" && !slices.Equal(changed, []string{tt.restart}) {
				t.Fatalf("KeepRestartSettings changed %v, want %q", changed, tt.restart)
			}
			if next.RestartSettings() != running.RestartSettings() {
				t.Fatal("restart-only settings not kept")
			}
		})
	}
}
