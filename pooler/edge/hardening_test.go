package edge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/session"
)

// keysAB is a keyring with two key names, "a" and "b".
func keysAB(t *testing.T) (*auth.Keyring, map[string]string) {
	t.Helper()
	secrets := map[string]string{}
	var keys []config.Key
	for _, name := range []string{"a", "b"} {
		entry, secret, err := apikey.NewConfigKey(name)
		if err != nil {
			t.Fatal(err)
		}
		secrets[name] = secret
		keys = append(keys, entry)
	}
	ring, err := auth.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return ring, secrets
}

// slowBody starts a POST /sql whose body trickles in one byte at a time and returns the status
// it finally gets.
func slowBody(t *testing.T, addr, key string, done chan<- int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		done <- 0
		return
	}
	defer conn.Close()
	body := `{"query": "select 1"}`
	fmt.Fprintf(conn, "POST /sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", key, len(body))
	go func() {
		for i := range len(body) {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond) // the trickle is the subject of the test
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		done <- -1
		return
	}
	resp.Body.Close()
	done <- resp.StatusCode
}

// TestSlowBodiesOfOneKeyDoNotStarveAnother: limits proved — http.maxInFlightPerKey and
// http.bodyReadTimeout. 50 requests of key A trickle their bodies; with a per-key cap, key B
// still gets 200 at once, and A's slow requests end with 408 after the body timeout. Without a
// per-key cap (the control) A's requests take every slot and B gets 429.
func TestSlowBodiesOfOneKeyDoNotStarveAnother(t *testing.T) {
	ring, secrets := keysAB(t)
	for _, tt := range []struct {
		name     string
		perKey   int
		wantB    int
		want408s bool
	}{
		{"per-key cap", 20, http.StatusOK, true},
		{"control: no per-key cap", 0, http.StatusTooManyRequests, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const bodyTimeout = 1500 * time.Millisecond
			ts, s := newTestServer(t, 2, func(o *Options) {
				o.Keys = KeyringChecker(ring)
				o.Limiter = NewLimiter(40, tt.perKey)
				o.BodyTimeout = bodyTimeout
			})
			done := make(chan int, 50)
			start := time.Now()
			for range 50 {
				go slowBody(t, ts.Listener.Addr().String(), secrets["a"], done)
			}
			wantHeld := int64(40)
			if tt.perKey > 0 {
				wantHeld = int64(tt.perKey)
			}
			testutil.Eventually(t, "A's slow requests hold their slots", 5*time.Second, func() bool { return s.limiter.InFlight() >= wantHeld })
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/sql", strings.NewReader(`{"query": "select 1"}`))
			req.Header.Set("Authorization", "Bearer "+secrets["b"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantB {
				t.Fatalf("key B got %d, want %d", resp.StatusCode, tt.wantB)
			}
			counts := map[int]int{}
			for range 50 {
				counts[<-done]++
			}
			took := time.Since(start)
			t.Logf("key A's 50 slow requests: %v, all answered after %v", counts, took.Round(time.Millisecond))
			if counts[http.StatusRequestTimeout] != int(wantHeld) || counts[http.StatusTooManyRequests] != 50-int(wantHeld) {
				t.Fatalf("A's statuses %v, want %d×408 and the rest 429", counts, wantHeld)
			}
			if took > bodyTimeout+2*time.Second {
				t.Fatalf("slow bodies held for %v, body timeout %v", took, bodyTimeout)
			}
		})
	}
}

// TestKeysOverPlainHTTPRefused: limit proved — allowCleartextWithoutTLS. A key sent over plain
// HTTP is refused (403) unless cleartext is allowed; over TLS it works.
func TestKeysOverPlainHTTPRefused(t *testing.T) {
	var failures []string
	var mu sync.Mutex
	guard := auth.NewGuard(nil, func(transport, reason string) {
		mu.Lock()
		failures = append(failures, transport+"/"+reason)
		mu.Unlock()
	}, auth.GuardSettings{})
	ts, _ := newTestServer(t, 1, func(o *Options) { o.CleartextAllowed = nil; o.Guard = guard })
	resp, out := post(t, ts, `{"query": "select 1"}`)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(out, "plain HTTP") {
		t.Fatalf("plain HTTP: %d %s", resp.StatusCode, out)
	}
	if len(failures) != 1 || failures[0] != "http/cleartext_without_tls" {
		t.Fatalf("failures recorded: %v", failures)
	}

	srv := NewServer(Options{Upstream: PoolUpstream(newPool(t, 1, 2*time.Second)), Keys: testKeyChecker(t), Database: "postgres"})
	tlsServer := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(tlsServer.Close)
	req, _ := http.NewRequest(http.MethodPost, tlsServer.URL+"/sql", strings.NewReader(`{"query": "select 1"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := tlsServer.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("over TLS: %d", resp.StatusCode)
	}
}

// TestHugeRowAnswers507WithBoundedMemory: limit proved — http.maxResponseBytes, enforced while
// a row is read. Four concurrent requests for a 200 MB row each answer 507; the process's
// peak RSS grows by less than 64 MiB (it grew by the row size per request before).
func TestHugeRowAnswers507WithBoundedMemory(t *testing.T) {
	ts, _ := newTestServer(t, 4, func(o *Options) {
		o.MaxResponseBytes = 10 << 20
		o.StatementTimeout = time.Minute // PostgreSQL building four 200 MB strings on a busy machine
	})
	before := rssNow(t)
	resetPeakRSS(t)
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Go(func() {
			resp, out := post(t, ts, `{"query": "select repeat('x', 200 * 1024 * 1024) as big"}`)
			statuses[i] = resp.StatusCode
			if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(out, "54000") {
				t.Errorf("status %d: %.200s", resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
	growth := peakRSS(t) - before
	t.Logf("4 × 200 MB rows: statuses %v, peak RSS growth %d MiB", statuses, growth>>20)
	if growth >= 64<<20 {
		t.Fatalf("peak RSS grew by %d MiB, want < 64 MiB", growth>>20)
	}
	// The pool is still usable.
	if resp, out := post(t, ts, `{"query": "select 1 as one"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the 507s: %d %s", resp.StatusCode, out)
	}
}

func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
}

func rssNow(t *testing.T) int64 { return procStatus(t, "VmRSS:") }

func peakRSS(t *testing.T) int64 { return procStatus(t, "VmHWM:") }

func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestCleartextOverPlainWebSocketRefused: limit proved — allowCleartextWithoutTLS covers
// WebSocket. What the Neon driver sends with pipelineConnect "password" (startup message,
// cleartext key and a query in one frame) over ws:// is refused with 28000 by default; with
// cleartext allowed it runs; over wss:// it runs by default.
func TestCleartextOverPlainWebSocketRefused(t *testing.T) {
	for _, tt := range []struct {
		name      string
		tls       bool
		allow     bool
		wantError string // SQLSTATE, "" = query answered
	}{
		{"ws:// by default", false, false, "28000"},
		{"ws:// with allowCleartextWithoutTLS", false, true, ""},
		{"wss:// by default", true, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, 1, 2*time.Second)
			keys := testKeyChecker(t).(keyringChecker).k
			proxy := session.NewProxy(p, &session.Runtime{Keyring: keys, Database: "postgres", MaxClients: 10,
				AuthTimeout: 5 * time.Second, MaxMessageBytes: 1 << 20, PreparedPerConn: 8, AllowCleartextWithoutTLS: tt.allow}, nil)
			t.Cleanup(proxy.CloseAll)
			srv := NewServer(Options{Upstream: PoolUpstream(p), Keys: KeyringChecker(keys), Database: "postgres", WebSocket: WebSocketSessions(proxy)})
			var ts *httptest.Server
			dialOpts := &websocket.DialOptions{}
			if tt.tls {
				ts = httptest.NewTLSServer(srv.Handler())
				dialOpts.HTTPClient = ts.Client()
			} else {
				ts = httptest.NewServer(srv.Handler())
			}
			t.Cleanup(ts.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			wsURL := "ws" + strings.TrimPrefix(ts.URL, "http") + "/v2"
			c, _, err := websocket.Dial(ctx, wsURL, dialOpts)
			if err != nil {
				t.Fatal(err)
			}
			conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
			defer conn.Close()
			var frame []byte
			frame, _ = (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": "app", "database": "postgres"}}).Encode(frame)
			frame, _ = (&pgproto3.PasswordMessage{Password: testKey}).Encode(frame)
			frame, _ = (&pgproto3.Query{String: "select 42"}).Encode(frame)
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			fe := pgproto3.NewFrontend(conn, conn)
			for {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("receive: %v", err)
				}
				switch m := msg.(type) {
				case *pgproto3.ErrorResponse:
					if m.Code != tt.wantError {
						t.Fatalf("error %s %s, want %q", m.Code, m.Message, tt.wantError)
					}
					return
				case *pgproto3.DataRow:
					if tt.wantError != "" {
						t.Fatalf("query answered, want %s", tt.wantError)
					}
					if string(m.Values[0]) != "42" {
						t.Fatalf("row %q", m.Values[0])
					}
					return
				}
			}
		})
	}
}
