package pooler_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/config"
)

// dialFrom makes pgconn connect from a chosen loopback address, so a test can play an
// attacker at 127.0.0.2 next to valid clients at 127.0.0.1.
func dialFrom(cfg *pgconn.Config, local string) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	cfg.DialFunc = d.DialContext
}

// metricValue reads one sample from the admin /metrics endpoint (0 when absent).
func metricValue(t *testing.T, h *harness, series string) float64 {
	t.Helper()
	_, body := httpGet(t, h.adminURL("/metrics"))
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return 0
}

// TestFailedLoginsAreLoggedCountedAndBudgeted: limits proved — auth.maxFailuresPerSource and
// the failure log. Wrong keys from one address are logged at info with remote address, key
// name and reason (never the key) and counted by transport and reason; after the budget the
// address is refused before any check (08004), while another address logs in normally.
func TestFailedLoginsAreLoggedCountedAndBudgeted(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Auth.MaxFailuresPerSource = 5
		c.Auth.FailureWindow = config.Duration{Duration: time.Minute}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	attempt := func(from, user, key string) error {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/app?sslmode=disable", user, key, h.port()))
		if err != nil {
			t.Fatal(err)
		}
		dialFrom(cfg, from)
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	const wrongKey = "ep_this-is-not-the-key"
	var codes []string
	for i := range 8 {
		user := "app"
		if i%2 == 1 {
			user = "ghost"
		}
		codes = append(codes, pgCode(attempt("127.0.0.2", user, wrongKey)))
	}
	if got := strings.Join(codes, ","); got != "28P01,28P01,28P01,28P01,28P01,08004,08004,08004" {
		t.Fatalf("SQLSTATEs of the attempts: %s", got)
	}
	if err := attempt("127.0.0.1", "app", h.key.secret); err != nil {
		t.Fatalf("valid client from another address: %v", err)
	}
	if err := attempt("127.0.0.2", "app", h.key.secret); pgCode(err) != "08004" {
		t.Fatalf("the right key from the refused address: %v, want 08004 until the budget refills", err)
	}

	logs := h.log.String()
	for _, re := range []string{
		`level=INFO msg="authentication failed" transport=tcp remote=127\.0\.0\.2:\d+ keyName=app reason=wrong_key`,
		`level=INFO msg="authentication failed" transport=tcp remote=127\.0\.0\.2:\d+ keyName=ghost reason=unknown_key_name`,
		`level=INFO msg="authentication failed" transport=tcp remote=127\.0\.0\.2:\d+ keyName=\w+ reason=too_many_failures`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Errorf("no log line matching %s in:\n%s", re, logs)
		}
	}
	if strings.Contains(logs, wrongKey) || strings.Contains(logs, h.key.secret) {
		t.Fatal("a key appears in the log")
	}
	for series, want := range map[string]float64{
		`edgepool_auth_failures_total{reason="wrong_key",transport="tcp"}`:         3,
		`edgepool_auth_failures_total{reason="unknown_key_name",transport="tcp"}`:  2,
		`edgepool_auth_failures_total{reason="too_many_failures",transport="tcp"}`: 4,
	} {
		if got := metricValue(t, h, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}
