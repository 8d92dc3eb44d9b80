package accelerate

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// findManyBody is a findMany plan over table t(name, color) selecting color where name = %1,
// as a model operation (cacheable).
func findManyBody(name string) string {
	return `{"model":"Label","operation":"findMany","params":{"%1":"` + name + `"},"plan":{"type":"dataMap","args":{` +
		`"expr":{"type":"query","args":{"type":"templateSql","fragments":[{"type":"stringChunk","chunk":"SELECT color FROM t WHERE name = "},{"type":"parameter"}],` +
		`"args":[{"prisma__type":"param","prisma__value":{"name":"%1","type":"String"}}],"argTypes":[{"arity":"scalar","scalarType":"string","dbType":"TEXT"}],` +
		`"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":true}},` +
		`"structure":{"type":"object","serializedName":null,"skipNulls":false,"fields":{"color":{"type":"field","dbName":"color","fieldType":{"arity":"required","type":"string"}}}},"enums":{}}}}`
}

func TestCache(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table t (name text primary key, color text)"), nil)
	execIn(t, ts.db, "insert into t values ('a', 'a1'), ('b', 'b1'), ('c', 'c1')")
	refreshed := make(chan struct{}, 4)
	ts.afterRefresh = func() { refreshed <- struct{}{} }
	get := func(name string, headers ...string) (color, status string) {
		t.Helper()
		code, h, body := ts.do(t, http.MethodPost, "/query", findManyBody(name), headers...)
		if code != http.StatusOK {
			t.Fatalf("findMany %s: %d %s", name, code, body)
		}
		color = strings.TrimSuffix(strings.TrimPrefix(body, `{"data":[{"color":"`), `"}]}`)
		return color, h.Get("Accelerate-Cache-Status")
	}
	recolor := func(name, color string) { execIn(t, ts.db, "update t set color = '"+color+"' where name = '"+name+"'") }
	expect := func(name, wantColor, wantStatus string, headers ...string) {
		t.Helper()
		if c, s := get(name, headers...); c != wantColor || s != wantStatus {
			t.Errorf("%s %v: got %s/%s, want %s/%s", name, headers, c, s, wantColor, wantStatus)
		}
	}
	ttl := "Cache-Control: max-age=60"

	// No strategy (the extension sends no-cache): never cached.
	expect("a", "a1", cacheNone, "Cache-Control: no-cache")
	expect("a", "a1", cacheNone)

	// ttl: a miss stores, a hit serves the stored answer although the data changed.
	expect("a", "a1", cacheMiss, ttl, "Accelerate-Cache-Tags: group1,shared")
	recolor("a", "a2")
	expect("a", "a1", cacheTTL, ttl)
	expect("b", "b1", cacheMiss, ttl, "Accelerate-Cache-Tags: group2")
	// Another key has its own entries.
	expect("a", "a2", cacheMiss, ttl, "Authorization: Bearer other")

	// Invalidate by tag drops those entries only, and only the key's own.
	if code, _, body := ts.do(t, http.MethodPost, "/invalidate", `{"tags":["group1"]}`); code != http.StatusOK || body != `{"invalidated":1}` {
		t.Fatalf("invalidate: %d %s", code, body)
	}
	recolor("b", "b2")
	expect("a", "a2", cacheMiss, ttl)
	expect("b", "b1", cacheTTL, ttl)
	expect("a", "a2", cacheTTL, ttl, "Authorization: Bearer other")
	// Invalidate all drops the key's entries.
	if code, _, body := ts.do(t, http.MethodPost, "/invalidate", `{"tags":"all"}`); code != http.StatusOK || body != `{"invalidated":2}` {
		t.Fatalf("invalidate all: %d %s", code, body)
	}
	expect("b", "b2", cacheMiss, ttl)
	expect("a", "a2", cacheTTL, ttl, "Authorization: Bearer other")
	for _, bad := range []string{`{"tags":"some"}`, `{"tags":[1]}`, `{}`, `[`} {
		if code, _, body := ts.do(t, http.MethodPost, "/invalidate", bad); code != http.StatusBadRequest {
			t.Errorf("invalidate %s: %d %s", bad, code, body)
		}
	}

	// stale-while-revalidate: with max-age 0 every stored answer is stale at once; it is served
	// (swr) while a background refresh stores the current one.
	swr := "Cache-Control: max-age=0,stale-while-revalidate=60"
	expect("c", "c1", cacheMiss, swr)
	recolor("c", "c2")
	expect("c", "c1", cacheSWR, swr)
	select {
	case <-refreshed:
	case <-time.After(10 * time.Second):
		t.Fatal("no background refresh")
	}
	expect("c", "c2", cacheSWR, swr)

	// Writes are never cached, even with a strategy: they run every time.
	for i := range 2 {
		code, h, body := ts.do(t, http.MethodPost, "/query", `{"model":"Label","operation":"updateMany","params":{},"plan":{"type":"execute","args":{"type":"rawSql","sql":"update t set color = 'w' where name = 'c'","args":[],"argTypes":[]}}}`, ttl)
		if code != http.StatusOK || h.Get("Accelerate-Cache-Status") != cacheNone || body != `{"data":1}` {
			t.Errorf("write %d: %d %s %s", i, code, h.Get("Accelerate-Cache-Status"), body)
		}
	}
	// A read operation whose plan writes all the same is caught by the READ ONLY transaction
	// and run uncached.
	code, h, body := ts.do(t, http.MethodPost, "/query", `{"model":"Label","operation":"findMany","params":{},"plan":{"type":"query","args":{"type":"rawSql","sql":"update t set color = 'x' where name = 'c' returning color","args":[],"argTypes":[]}}}`, ttl)
	if code != http.StatusOK || h.Get("Accelerate-Cache-Status") != cacheNone || !strings.Contains(body, `"x"`) {
		t.Errorf("a writing read: %d %s %s", code, h.Get("Accelerate-Cache-Status"), body)
	}
	// Queries in an interactive transaction are not served from the cache.
	id := ts.startTx(t, `{"maxWait":2000,"timeout":5000}`)
	code, h, body = ts.do(t, http.MethodPost, "/transaction/"+id+"/query", findManyBody("a"), ttl)
	if code != http.StatusOK || h.Get("Accelerate-Cache-Status") != cacheNone || !strings.Contains(body, "a2") {
		t.Errorf("query in a transaction: %d %s %s", code, h.Get("Accelerate-Cache-Status"), body)
	}
	mustOK(t, ts, "/transaction/"+id+"/commit", "")
}

func TestCacheControlParsing(t *testing.T) {
	for h, want := range map[string]struct {
		p  cachePolicy
		ok bool
	}{
		"":                                       {cachePolicy{}, false},
		"no-cache":                               {cachePolicy{}, false},
		"max-age=30":                             {cachePolicy{maxAge: 30 * time.Second}, true},
		"max-age=30,stale-while-revalidate=60":   {cachePolicy{30 * time.Second, 60 * time.Second}, true},
		"max-age=0,stale-while-revalidate=5":     {cachePolicy{swr: 5 * time.Second}, true},
		"max-age=0":                              {cachePolicy{}, false},
		"max-age=abc":                            {cachePolicy{}, false},
		"max-age=99999999":                       {cachePolicy{maxAge: maxCacheTTL}, true},
		"max-age=30, no-store":                   {cachePolicy{}, false},
		`max-age="10", stale-while-revalidate=1`: {cachePolicy{10 * time.Second, time.Second}, true},
	} {
		p, ok := parseCacheControl(h)
		if ok != want.ok || (ok && p != want.p) {
			t.Errorf("%q: got %+v %v, want %+v %v", h, p, ok, want.p, want.ok)
		}
	}
}
