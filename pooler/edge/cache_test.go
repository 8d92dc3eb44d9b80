package edge

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgepool/edgepool/internal/testutil"
)

func TestParseCachePolicy(t *testing.T) {
	for header, want := range map[string]struct {
		p  cachePolicy
		ok bool
	}{
		"":                                      {cachePolicy{}, false},
		"max-age=30":                            {cachePolicy{maxAge: 30 * time.Second}, true},
		"max-age=30, stale-while-revalidate=60": {cachePolicy{30 * time.Second, 60 * time.Second}, true},
		"stale-while-revalidate=5":              {cachePolicy{10 * time.Second, 5 * time.Second}, true}, // default TTL 10s
		"no-cache":                              {cachePolicy{}, false},
		"max-age=0":                             {cachePolicy{}, false},
		"max-age=abc":                           {cachePolicy{}, false},
		"max-age=999999999":                     {cachePolicy{maxAge: maxCacheTTL}, true},
	} {
		h := http.Header{}
		if header != "" {
			h.Set("Cache-Control", header)
		}
		p, ok := parseCachePolicy(h, 10*time.Second)
		if ok != want.ok || (ok && p != want.p) {
			t.Errorf("%q: got %+v %v, want %+v %v", header, p, ok, want.p, want.ok)
		}
	}
}

func TestCacheLRUByBytes(t *testing.T) {
	m := NewMetrics()
	c := NewCache(8000, m) // entries up to 1000 bytes
	p := cachePolicy{maxAge: time.Minute}
	body := make([]byte, 600) // ~760 bytes with overhead: 10 fit
	for i := range 12 {
		c.store(string(rune('a'+i)), body, p)
	}
	if c.bytes > c.maxBytes {
		t.Fatalf("cache holds %d bytes, budget %d", c.bytes, c.maxBytes)
	}
	if got := metricValue(t, m.cacheEvictions); got != 2 {
		t.Errorf("evictions metric = %v, want 2", got)
	}
	if got := metricValue(t, m.cacheEntries); got != 10 {
		t.Errorf("entries metric = %v, want 10", got)
	}
	if _, st, _ := c.lookup("a", p); st != cacheMiss {
		t.Errorf("oldest entry should be evicted, got %s", st)
	}
	if _, st, _ := c.lookup("l", p); st != cacheHit {
		t.Errorf("newest entry should be cached, got %s", st)
	}
	c.store("huge", make([]byte, 2000), p)
	if _, st, _ := c.lookup("huge", p); st != cacheMiss {
		t.Errorf("an entry over an eighth of the budget must not be cached")
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestCacheAging(t *testing.T) {
	c := NewCache(1<<20, nil)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	p := cachePolicy{maxAge: 10 * time.Second, staleWhileRevalidate: 5 * time.Second}
	c.store("k", []byte("v"), p)
	for _, step := range []struct {
		at   time.Duration
		want string
	}{{0, cacheHit}, {9 * time.Second, cacheHit}, {12 * time.Second, cacheStale}, {16 * time.Second, cacheMiss}} {
		now = time.Unix(1000, 0).Add(step.at)
		if _, st, _ := c.lookup("k", p); st != step.want {
			t.Errorf("at +%s: got %s, want %s", step.at, st, step.want)
		}
	}
	if len(c.entries) != 0 {
		t.Errorf("expired entry not removed")
	}
}

func TestHTTPCache(t *testing.T) {
	ts, s := newTestServer(t, 2, func(o *Options) { o.Cache = NewCache(1<<20, nil) })
	now := time.Now()
	s.opts.Cache.now = func() time.Time { return now }
	pg.Exec(t, "create table if not exists cache_t (v int); truncate cache_t; insert into cache_t values (1)")
	t.Cleanup(func() { _ = pg.ExecErr("drop table cache_t") })

	read := `{"query": "select v from cache_t where v > $1", "params": [0]}`
	resp, out := post(t, ts, read, "Cache-Control: max-age=30")
	wantEqual(t, "first", resp.Header.Get("Edgepool-Cache"), "miss")
	first := out
	pg.Exec(t, "update cache_t set v = 2")
	resp, out = post(t, ts, read, "Cache-Control: max-age=30")
	wantEqual(t, "second", resp.Header.Get("Edgepool-Cache"), "hit")
	wantEqual(t, "cached body", out, first)

	// Other parameters, another key name's scope, or no opt-in: not this entry.
	resp, _ = post(t, ts, `{"query": "select v from cache_t where v > $1", "params": [-1]}`, "Cache-Control: max-age=30")
	wantEqual(t, "other params", resp.Header.Get("Edgepool-Cache"), "miss")
	resp, out = post(t, ts, read)
	wantEqual(t, "no opt-in header", resp.Header.Get("Edgepool-Cache"), "")
	wantEqual(t, "no opt-in rows", decode(t, out)["rows"], []any{map[string]any{"v": 2.0}})

	now = now.Add(31 * time.Second)
	resp, out = post(t, ts, read, "Cache-Control: max-age=30")
	wantEqual(t, "after ttl", resp.Header.Get("Edgepool-Cache"), "miss")
	wantEqual(t, "fresh rows", decode(t, out)["rows"], []any{map[string]any{"v": 2.0}})

	// Writes run, uncached, and are never stored.
	for range 2 {
		resp, _ = post(t, ts, `{"query": "insert into cache_t values (3)"}`, "Cache-Control: max-age=30")
		wantEqual(t, "write status", resp.StatusCode, http.StatusOK)
		wantEqual(t, "write cache", resp.Header.Get("Edgepool-Cache"), "bypass")
	}
	_, out = post(t, ts, `{"query": "select count(*)::int4 as n from cache_t"}`)
	wantEqual(t, "both writes ran", decode(t, out)["rows"], []any{map[string]any{"n": 3.0}})

	// Errors are not cached; batches bypass.
	resp, _ = post(t, ts, `{"query": "select * from nope"}`, "Cache-Control: max-age=30")
	wantEqual(t, "error cache", resp.Header.Get("Edgepool-Cache"), "bypass")
	resp, _ = post(t, ts, `{"queries": [{"query": "select 1"}]}`, "Cache-Control: max-age=30")
	wantEqual(t, "batch cache", resp.Header.Get("Edgepool-Cache"), "bypass")
}

func TestHTTPCacheStaleWhileRevalidate(t *testing.T) {
	ts, s := newTestServer(t, 2, func(o *Options) { o.Cache = NewCache(1<<20, nil) })
	c := s.opts.Cache
	pg.Exec(t, "create table if not exists swr_t (v int); truncate swr_t; insert into swr_t values (1)")
	t.Cleanup(func() { _ = pg.ExecErr("drop table swr_t") })
	start := time.Now()
	var offset time.Duration
	c.now = func() time.Time { return start.Add(offset) }

	read := `{"query": "select v from swr_t"}`
	hdr := "Cache-Control: max-age=10, stale-while-revalidate=60"
	post(t, ts, read, hdr)
	pg.Exec(t, "update swr_t set v = 2")
	offset = 20 * time.Second
	resp, out := post(t, ts, read, hdr)
	wantEqual(t, "stale status", resp.Header.Get("Edgepool-Cache"), "stale")
	wantEqual(t, "stale rows", decode(t, out)["rows"], []any{map[string]any{"v": 1.0}})
	testutil.EventuallyNoError(t, "the background refresh landing", 5*time.Second, func() error {
		resp, out = post(t, ts, read, hdr)
		if got := resp.Header.Get("Edgepool-Cache"); got != "hit" {
			return fmt.Errorf("status %q", got)
		}
		return nil
	})
	wantEqual(t, "refreshed rows", decode(t, out)["rows"], []any{map[string]any{"v": 2.0}})
}
