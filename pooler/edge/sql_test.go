package edge

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testutil"
)

const typesQuery = `select 42::int4 as i, 9007199254740993::int8 as big, 'héllo "x"'::text as t, true as b,
	'{"a":[1,2]}'::jsonb as j, '2024-01-02 03:04:05+00'::timestamptz as ts, 12.50::numeric as n,
	'\xdeadbeef'::bytea as by, array[1,2,null]::int4[] as ia, array['a,b','c"d',null]::text[] as ta,
	null::text as nothing, 1.5::float8 as f, 'NaN'::float8 as nan`

func TestSingleQueryTypedOutput(t *testing.T) {
	ts, _ := newTestServer(t, 2, nil)
	resp, body := post(t, ts, `{"query": `+jsonString(typesQuery)+`, "params": []}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	m := decode(t, body)
	wantEqual(t, "command", m["command"], "SELECT")
	wantEqual(t, "rowCount", m["rowCount"], 1.0)
	wantEqual(t, "rowAsArray", m["rowAsArray"], false)
	row := m["rows"].([]any)[0].(map[string]any)
	want := map[string]any{
		"i": 42.0, "big": "9007199254740993", "t": `héllo "x"`, "b": true,
		"j": map[string]any{"a": []any{1.0, 2.0}}, "ts": "2024-01-02 03:04:05+00", "n": "12.50",
		"by": `\xdeadbeef`, "ia": []any{1.0, 2.0, nil}, "ta": []any{"a,b", `c"d`, nil},
		"nothing": nil, "f": 1.5, "nan": "NaN",
	}
	wantEqual(t, "row", row, want)
	fields := m["fields"].([]any)
	wantEqual(t, "field count", len(fields), 13)
	f0 := fields[0].(map[string]any)
	wantEqual(t, "field 0", f0, map[string]any{"name": "i", "dataTypeID": 23.0, "tableID": 0.0, "columnID": 0.0,
		"dataTypeSize": 4.0, "dataTypeModifier": -1.0, "format": "text"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("missing CORS or request id headers: %v", resp.Header)
	}
}

func TestRawTextAndArrayMode(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	resp, body := post(t, ts, `{"query": "select 1::int4 as a, true as b, array[1,2] as c, null::int as d"}`,
		"Neon-Raw-Text-Output: true", "Neon-Array-Mode: true")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	m := decode(t, body)
	wantEqual(t, "rows", m["rows"], []any{[]any{"1", "t", "{1,2}", nil}})
	wantEqual(t, "rowAsArray", m["rowAsArray"], true)

	// Flags count only when exactly "true".
	_, body = post(t, ts, `{"query": "select 1::int4 as a"}`, "Neon-Array-Mode: TRUE")
	wantEqual(t, "rows", decode(t, body)["rows"], []any{map[string]any{"a": 1.0}})
}

func TestParams(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	body := `{"query": "select $1::int as i, $2::text as t, $3::bool as b, $4::jsonb as j, $5::int[] as a, $6::text[] as ta, $7::text as n, $8::numeric as num",
		"params": [7, "it's", true, {"k": [1, "x"]}, [[1, 2], [3, null]], ["a\"b", "c\\d", null, ""], null, 1.25]}`
	resp, out := post(t, ts, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	row := decode(t, out)["rows"].([]any)[0]
	wantEqual(t, "row", row, map[string]any{
		"i": 7.0, "t": "it's", "b": true, "j": map[string]any{"k": []any{1.0, "x"}},
		"a": []any{[]any{1.0, 2.0}, []any{3.0, nil}}, "ta": []any{`a"b`, `c\d`, nil, ""}, "n": nil, "num": "1.25",
	})
}

func TestCommandTags(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	for _, c := range []struct {
		sql, command string
		rowCount     any
	}{
		{"create temp table if not exists tags_t (id int)", "CREATE", nil},
		{"insert into tags_t select generate_series(1, 3)", "INSERT", 3.0},
		{"update tags_t set id = id where id > 1", "UPDATE", 2.0},
		{"select * from tags_t", "SELECT", 3.0},
	} {
		// temp tables live per connection; the pool has one, so they persist between requests.
		resp, out := post(t, ts, `{"query": `+jsonString(c.sql)+`}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", c.sql, resp.StatusCode, out)
		}
		m := decode(t, out)
		wantEqual(t, c.sql+" command", m["command"], c.command)
		wantEqual(t, c.sql+" rowCount", m["rowCount"], c.rowCount)
	}
}

func TestBatchCommitsAtomically(t *testing.T) {
	ts, _ := newTestServer(t, 2, nil)
	pg.Exec(t, "create table if not exists batch_t (id int primary key)")
	t.Cleanup(func() { _ = pg.ExecErr("drop table batch_t") })

	resp, out := post(t, ts, `{"queries": [
		{"query": "insert into batch_t values ($1)", "params": [1]},
		{"query": "insert into batch_t values ($1) returning id", "params": [2]},
		{"query": "select current_setting('transaction_isolation') as iso"}]}`,
		"Neon-Batch-Isolation-Level: Serializable")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	results := decode(t, out)["results"].([]any)
	wantEqual(t, "results", len(results), 3)
	wantEqual(t, "returning", results[1].(map[string]any)["rows"], []any{map[string]any{"id": 2.0}})
	wantEqual(t, "isolation", results[2].(map[string]any)["rows"], []any{map[string]any{"iso": "serializable"}})

	// The second insert violates the primary key: the first one must be rolled back too.
	resp, out = post(t, ts, `{"queries": [
		{"query": "insert into batch_t values (10)"},
		{"query": "insert into batch_t values (1)"}]}`)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, out)
	}
	wantEqual(t, "code", decode(t, out)["code"], "23505")
	_, out = post(t, ts, `{"query": "select count(*)::int4 as n from batch_t"}`)
	wantEqual(t, "rows after rollback", decode(t, out)["rows"], []any{map[string]any{"n": 2.0}})

	// A read-only batch refuses writes.
	_, out = post(t, ts, `{"queries": [{"query": "insert into batch_t values (11)"}]}`, "Neon-Batch-Read-Only: true")
	wantEqual(t, "read-only code", decode(t, out)["code"], "25006")
}

func TestSQLErrorFields(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	resp, out := post(t, ts, `{"query": "select * from no_such_table"}`)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	m := decode(t, out)
	wantEqual(t, "code", m["code"], "42P01")
	wantEqual(t, "position", m["position"], "15")
	wantEqual(t, "severity", m["severity"], "ERROR")
	if !strings.Contains(m["message"].(string), "no_such_table") {
		t.Errorf("message %q", m["message"])
	}
	// A lone BEGIN must not leak an open transaction to the next request on the connection.
	// set_config(..., true) lasts until the end of the transaction: if BEGIN leaked, the third
	// request would still see it.
	post(t, ts, `{"query": "begin"}`)
	post(t, ts, `{"query": "select set_config('application_name', 'leaked', true)"}`)
	_, out = post(t, ts, `{"query": "select current_setting('application_name') = 'leaked' as leaked"}`)
	wantEqual(t, "after begin", decode(t, out)["rows"], []any{map[string]any{"leaked": false}})
}

func TestAuth(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	cases := []struct {
		name   string
		header []string
		status int
		code   string
	}{
		{"missing", []string{"Neon-Connection-String:"}, 401, "28000"},
		{"no password", []string{"Neon-Connection-String: postgres://app@localhost/postgres"}, 401, "28000"},
		{"wrong key", []string{"Neon-Connection-String: postgres://app:ep_wrong@localhost/postgres"}, 401, "28P01"},
		{"wrong user", []string{"Neon-Connection-String: postgres://other:" + testKey + "@localhost/postgres"}, 401, "28P01"},
		{"bearer ok", []string{"Neon-Connection-String:", "Authorization: Bearer " + testKey}, 200, ""},
		{"bearer wrong", []string{"Neon-Connection-String:", "Authorization: Bearer nope"}, 401, "28P01"},
		{"bad scheme", []string{"Neon-Connection-String:", "Authorization: Basic abc"}, 400, "08000"},
		{"bad url", []string{"Neon-Connection-String: mysql://x"}, 400, "08000"},
		{"wrong database", []string{"Neon-Connection-String: postgres://app:" + testKey + "@localhost/other"}, 400, "3D000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, out := post(t, ts, `{"query": "select 1"}`, c.header...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, out)
			}
			if c.code != "" {
				wantEqual(t, "code", decode(t, out)["code"], c.code)
			}
			if strings.Contains(out, testKey) {
				t.Errorf("response leaks the key: %s", out)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	ts, _ := newTestServer(t, 1, func(o *Options) { o.MaxRequestBytes = 1000 })
	for _, body := range []string{``, `{`, `[]`, `"x"`, `{"query": 5}`, `{"queries": []}`, `{"queries": [{}]}`,
		`{"query": "select 1", "queries": []}`, `{"query": "select $1", "params": {"a": 1}}`, `{"query": "x"} trailing`,
		`{"query": "select $1::int[]", "params": [[[[[[[[1]]]]]]]]}`} {
		resp, out := post(t, ts, body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400: %s", body, resp.StatusCode, out)
		} else if _, ok := decode(t, out)["message"].(string); !ok {
			t.Errorf("body %q: no message: %s", body, out)
		}
	}
	resp, _ := post(t, ts, `{"query": "select '`+strings.Repeat("x", 2000)+`'"}`)
	wantEqual(t, "oversized body status", resp.StatusCode, http.StatusRequestEntityTooLarge)
	resp, _ = post(t, ts, `{"queries": [{"query": "select 1"}]}`, "Neon-Batch-Isolation-Level: Chaos")
	wantEqual(t, "bad isolation status", resp.StatusCode, http.StatusBadRequest)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sql", nil)
	getResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	getResp.Body.Close()
	wantEqual(t, "GET status", getResp.StatusCode, http.StatusMethodNotAllowed)
}

func TestPreflight(t *testing.T) {
	ts, _ := newTestServer(t, 1, nil)
	req, _ := http.NewRequest(http.MethodOptions, ts.URL+"/sql", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantEqual(t, "status", resp.StatusCode, http.StatusNoContent)
	wantEqual(t, "allow origin", resp.Header.Get("Access-Control-Allow-Origin"), "*")
	for _, h := range []string{"Neon-Connection-String", "Neon-Batch-Isolation-Level", "Authorization"} {
		if !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), h) {
			t.Errorf("preflight does not allow %s", h)
		}
	}
}

func TestResponseCapAndStatementTimeout(t *testing.T) {
	ts, _ := newTestServer(t, 1, func(o *Options) { o.MaxResponseBytes = 10000; o.StatementTimeout = 500 * 1e6 })
	resp, out := post(t, ts, `{"query": "select repeat('x', 100) from generate_series(1, 1000)"}`)
	wantEqual(t, "big response status", resp.StatusCode, http.StatusInsufficientStorage)
	wantEqual(t, "big response code", decode(t, out)["code"], "54000")
	resp, out = post(t, ts, `{"query": "select 1 as one"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connection unusable after 507: %d %s", resp.StatusCode, out)
	}
	start := time.Now()
	resp, out = post(t, ts, `{"query": "select pg_sleep(10) as timeout_probe"}`)
	if resp.StatusCode != http.StatusBadRequest || decode(t, out)["code"] != "57014" {
		t.Fatalf("statement timeout: status %d: %s", resp.StatusCode, out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("statement timeout answered after %s", took)
	}
	// The statement was cancelled on the server, not left running on a connection the pool
	// no longer counts.
	if n := pg.ActiveQueries(t, "%timeout_probe%"); n != 0 {
		t.Errorf("%d timed-out statements still running on the server", n)
	}
	resp, out = post(t, ts, `{"query": "select 1 as one"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pool unusable after timeout: %d %s", resp.StatusCode, out)
	}
}

func TestPoolExhaustionGivesCleanError(t *testing.T) {
	ts, _ := newTestServer(t, 2, nil) // the test pool waits 2s for a connection
	const n = 40
	var wg sync.WaitGroup
	statuses := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, out := post(t, ts, `{"query": "select pg_sleep(0.3)"}`)
			if resp.StatusCode == http.StatusOK {
				statuses <- "ok"
				return
			}
			var m map[string]any
			_ = json.Unmarshal([]byte(out), &m)
			statuses <- m["code"].(string)
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[string]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts["ok"]+counts["53300"] != n || counts["ok"] == 0 || counts["53300"] == 0 {
		t.Fatalf("want only successes and 53300 timeouts (some of each), got %v", counts)
	}
}

func TestMaxInFlight(t *testing.T) {
	ts, s := newTestServer(t, 2, func(o *Options) { o.MaxInFlight = 1 })
	slow := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/sql", strings.NewReader(`{"query": "select pg_sleep(1.5)"}`))
		req.Header.Set("Neon-Connection-String", "postgres://app:"+testKey+"@localhost/postgres")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	testutil.Eventually(t, "the slow request holding the only slot", 10*time.Second, func() bool { return s.limiter.InFlight() == 1 })
	resp, out := post(t, ts, `{"query": "select 1"}`)
	wantEqual(t, "second request status", resp.StatusCode, http.StatusTooManyRequests)
	wantEqual(t, "second request code", decode(t, out)["code"], "53300")
	wantEqual(t, "Retry-After", resp.Header.Get("Retry-After"), "1")
	wantEqual(t, "first request status", <-slow, http.StatusOK)
	resp, _ = post(t, ts, `{"query": "select 1"}`)
	wantEqual(t, "after the slot frees", resp.StatusCode, http.StatusOK)
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}
