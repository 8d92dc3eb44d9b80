package config

import (
	"strings"
	"testing"
	"time"
)

const minimal = `{
  "listen": {"postgres": "127.0.0.1:6432"},
  "database": "app",
  "upstream": {"host": "db", "database": "app", "user": "u", "password": "p'\\w"},
  "keys": [{"name": "default", "verifiers": [{"scram": "SCRAM-SHA-256$4096:c2FsdA==$a:b", "sha256": "00"}]}]
}`

func TestParseFillsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pool.Mode != ModeTransaction || cfg.Pool.Size != 10 || cfg.Upstream.Port != 5432 ||
		cfg.Pool.QueryWaitTimeout.Duration != 30*time.Second || cfg.ClientAuthMethod != AuthSCRAM ||
		cfg.Pool.PreparedStatementsPerConn != 256 {
		t.Fatalf("defaults not applied: %+v", cfg.Pool)
	}
	if v, ok := cfg.Verifiers("default"); !ok || len(v) != 1 {
		t.Fatalf("Verifiers(default) = %v, %v", v, ok)
	}
	if _, ok := cfg.Verifiers("other"); ok {
		t.Fatal("Verifiers found an unknown name")
	}
	target, err := cfg.UpstreamTarget()
	if err != nil {
		t.Fatal(err)
	}
	if target.Password != `p'\w` || target.SSLMode != "require" || target.RequireAuth != "" || target.ConnectTimeout != 5*time.Second {
		t.Fatalf("upstream target: %+v", target)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pool.QueryWaitTimeout = Duration{1500 * time.Millisecond}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"queryWaitTimeout": "1.5s"`) {
		t.Fatalf("duration not rendered as string:\n%s", out)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Pool.QueryWaitTimeout != cfg.Pool.QueryWaitTimeout {
		t.Fatalf("round trip changed duration: %v", back.Pool.QueryWaitTimeout)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	_, err := Parse([]byte(`{"listen": {"postgres": "", "http": ""}, "upstream": {"port": 0, "sslMode": "bogus", "requireAuth": "kerberos"},
	  "pool": {"mode": "statement", "size": 0, "maxClientConnections": 0, "maxMessageBytes": 10,
	           "queryWaitTimeout": "0s", "preparedStatementsPerConn": 0},
	  "clientAuthMethod": "md5", "tls": {"certFile": "x"},
	  "keys": [{"name": "a", "verifiers": [{}]}, {"name": "a"}]}`))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"listen", "tls", "database", "upstream.host", "upstream.port", "upstream.database",
		"upstream.user", "upstream.sslMode", "upstream.requireAuth", "pool.mode", "pool.size", "pool.maxClientConnections",
		"pool.maxMessageBytes", "pool.queryWaitTimeout", "clientAuthMethod", "pool.preparedStatementsPerConn",
		"keys[0].verifiers[0]", "keys[1].name"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
	if _, err := Parse([]byte(`{"pool": {"queryWaitTimeout": 30}}`)); err == nil || !strings.Contains(err.Error(), "duration") {
		t.Errorf("numeric duration: %v", err)
	}
}

func TestAccelerateSettings(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.HTTP.Accelerate; !a.Enabled || a.MaxTransactionTimeout.Duration != 15*time.Second || a.MaxBindValues != 0 {
		t.Fatalf("accelerate defaults: %+v", a)
	}
	withHTTP := strings.Replace(minimal, `"database": "app",`,
		`"database": "app", "http": {"enabled": true, "accelerate": {"enabled": false, "maxBindValues": 1000}},`, 1)
	if cfg, err = Parse([]byte(withHTTP)); err != nil {
		t.Fatal(err)
	}
	if a := cfg.HTTP.Accelerate; a.Enabled || a.MaxBindValues != 1000 || a.MaxTransactionTimeout.Duration != 15*time.Second {
		t.Fatalf("accelerate settings not applied over the defaults: %+v", a)
	}
	bad := strings.Replace(minimal, `"database": "app",`,
		`"database": "app", "http": {"accelerate": {"maxBindValues": 70000, "maxTransactionTimeout": "-1s"}},`, 1)
	_, err = Parse([]byte(bad))
	for _, field := range []string{"http.accelerate.maxBindValues", "http.accelerate.maxTransactionTimeout"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}
