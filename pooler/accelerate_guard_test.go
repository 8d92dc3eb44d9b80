package pooler_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// TestAccelerateSharesTheHTTPDefences: the Prisma Accelerate endpoint on the HTTP listener is
// held to the same limits as POST /sql — keys over plain HTTP refused (allowCleartextWithoutTLS),
// failed keys logged and budgeted per source (auth.maxFailuresPerSource), and one in-flight
// budget per key across both protocols (http.maxInFlightPerKey).
func TestAccelerateSharesTheHTTPDefences(t *testing.T) {
	call := func(h *harness, path, key string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.srv.HTTPAddr().String()+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("plain HTTP refused by default", func(t *testing.T) {
		h := startPooler(t, func(c *config.Config) { c.Listen.HTTP, c.HTTP.Enabled = "127.0.0.1:0", true })
		if code, body := call(h, "/connection-info", h.key.secret); code != http.StatusForbidden || !strings.Contains(body, "plain HTTP") {
			t.Fatalf("/connection-info over http://: %d %s", code, body)
		}
	})

	t.Run("failed keys logged and budgeted", func(t *testing.T) {
		h := startPooler(t, func(c *config.Config) {
			c.Listen.HTTP, c.HTTP.Enabled, c.AllowCleartextWithoutTLS = "127.0.0.1:0", true, true
			c.Auth.MaxFailuresPerSource = 3
		})
		var codes []int
		for range 5 {
			code, _ := call(h, "/connection-info", "ep_wrong")
			codes = append(codes, code)
		}
		if got := fmt.Sprint(codes); got != "[401 401 401 429 429]" {
			t.Fatalf("wrong keys answered %s", got)
		}
		if !strings.Contains(h.log.String(), `msg="authentication failed" transport=http remote=127.0.0.1:`) {
			t.Fatalf("no failure log line:\n%s", h.log.String())
		}
		if n := metricValue(t, h, `edgepool_auth_failures_total{reason="wrong_key",transport="http"}`); n != 3 {
			t.Fatalf("wrong_key failures counted: %v", n)
		}
	})

	t.Run("one in-flight budget per key across POST /sql and Accelerate", func(t *testing.T) {
		b := newTestKey(t, "b")
		h := startPooler(t, func(c *config.Config) {
			c.Listen.HTTP, c.HTTP.Enabled, c.AllowCleartextWithoutTLS = "127.0.0.1:0", true, true
			c.HTTP.MaxInFlightPerKey = 2
			c.HTTP.BodyReadTimeout = config.Duration{Duration: 5 * time.Second}
			c.Keys = append(c.Keys, b.entry)
		})
		// Two POST /sql requests of key app hold its two slots, waiting for their bodies.
		for range 2 {
			c, err := net.Dial("tcp", h.srv.HTTPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			fmt.Fprintf(c, "POST /sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{", h.key.secret)
		}
		testutil.Eventually(t, "key app's slots taken", 5*time.Second, func() bool {
			code, _ := call(h, "/connection-info", h.key.secret)
			return code == http.StatusTooManyRequests
		})
		if code, body := call(h, "/connection-info", b.secret); code != http.StatusOK {
			t.Fatalf("key b on Accelerate while key app is at its cap: %d %s", code, body)
		}
	})
}
