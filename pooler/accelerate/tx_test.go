package accelerate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// queryOf is a raw query request body (what $queryRaw posts).
func queryOf(sql string) string { return rawBody("query", "queryRaw", sql) }

// execOf is a raw execute request body (what $executeRaw posts).
func execOf(sql string) string { return rawBody("execute", "executeRaw", sql) }

func rawBody(kind, op, sql string) string {
	b, err := json.Marshal(sql)
	if err != nil {
		panic(err)
	}
	return `{"operation":"` + op + `","params":{},"plan":{"type":"` + kind + `","args":{"type":"rawSql","sql":` +
		string(b) + `,"args":[],"argTypes":[]}}}`
}

// startTx opens an interactive transaction and returns its id.
func (ts *testServer) startTx(t *testing.T, body string, headers ...string) string {
	t.Helper()
	code, _, out := ts.do(t, http.MethodPost, "/transaction/start", body, headers...)
	var r struct{ ID string }
	if code != http.StatusOK || json.Unmarshal([]byte(out), &r) != nil || r.ID == "" {
		t.Fatalf("start %s: %d %s", body, code, out)
	}
	return r.ID
}

// sqlValue runs a query directly in a database and returns the first column of the first row
// as text.
func sqlValue(t *testing.T, db, sql string) string {
	t.Helper()
	res := execIn(t, db, sql)
	if len(res) == 0 || len(res[len(res)-1].Rows) == 0 {
		return ""
	}
	return string(res[len(res)-1].Rows[0][0])
}

func TestTransactionNestedSavepoints(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table t (v text)"), nil)
	id := ts.startTx(t, `{"maxWait":2000,"timeout":10000}`)
	mustOK(t, ts, "/transaction/"+id+"/query", execOf("insert into t values ('outer')"))

	// A nested transaction gets the same id and a savepoint; its rollback undoes only its work.
	if inner := ts.startTx(t, `{"maxWait":2000,"timeout":10000,"newTxId":"`+id+`"}`); inner != id {
		t.Fatalf("nested start returned %s, want the outer id %s", inner, id)
	}
	mustOK(t, ts, "/transaction/"+id+"/query", execOf("insert into t values ('inner-rolled-back')"))
	mustOK(t, ts, "/transaction/"+id+"/rollback", "")
	// A second nested level commits (releases its savepoint) into the outer transaction.
	ts.startTx(t, `{"maxWait":2000,"timeout":10000,"newTxId":"`+id+`"}`)
	mustOK(t, ts, "/transaction/"+id+"/query", execOf("insert into t values ('inner-kept')"))
	mustOK(t, ts, "/transaction/"+id+"/commit", "")
	if got := sqlValue(t, ts.db, "select count(*) from t"); got != "0" {
		t.Fatalf("uncommitted rows visible outside the transaction: %s", got)
	}
	if code, _, body := ts.do(t, http.MethodPost, "/transaction/"+id+"/commit", ""); code != http.StatusOK || body != "{}" {
		t.Fatalf("commit: %d %s", code, body)
	}
	if got := sqlValue(t, ts.db, "select string_agg(v, ',' order by v) from t"); got != "inner-kept,outer" {
		t.Errorf("after commit: %q", got)
	}
	// The transaction is gone; later requests get P2028 with the reason.
	code, _, body := ts.do(t, http.MethodPost, "/transaction/"+id+"/query", queryOf("select 1"))
	if code != http.StatusConflict || !strings.Contains(body, "A query cannot be executed on a committed transaction.") {
		t.Errorf("query after commit: %d %s", code, body)
	}
	code, _, body = ts.do(t, http.MethodPost, "/transaction/00000000-0000-4000-8000-000000000000/rollback", "")
	if code != http.StatusConflict || !strings.Contains(body, `"code":"P2028"`) || !strings.Contains(body, "Transaction not found") {
		t.Errorf("unknown id: %d %s", code, body)
	}
	if st := ts.pool.Stats(); st.Active != 0 {
		t.Errorf("%d upstream connections still lent out", st.Active)
	}
}

func mustOK(t *testing.T, ts *testServer, path, body string) string {
	t.Helper()
	code, _, out := ts.do(t, http.MethodPost, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", path, code, out)
	}
	return out
}

// Requests of one transaction that arrive together run one after the other on its one
// connection.
func TestTransactionSerialisesConcurrentRequests(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table t (n int)"), nil)
	id := ts.startTx(t, `{"maxWait":2000,"timeout":10000}`)
	var wg sync.WaitGroup
	bodies := make([]string, 8)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each request reads the count, sleeps, and writes count+1: interleaving would lose
			// increments.
			_, _, bodies[i] = ts.do(t, http.MethodPost, "/transaction/"+id+"/query",
				queryOf("insert into t select coalesce(max(n), 0) + 1 from t, pg_sleep(0.01) returning pg_backend_pid() as pid"))
		}()
	}
	wg.Wait()
	pids := map[string]bool{}
	for _, b := range bodies {
		var r struct{ Data struct{ Rows [][]any } }
		if err := json.Unmarshal([]byte(b), &r); err != nil || len(r.Data.Rows) != 1 {
			t.Fatalf("concurrent request: %s", b)
		}
		pids[fmt.Sprint(r.Data.Rows[0][0])] = true
	}
	if len(pids) != 1 {
		t.Errorf("a transaction's requests ran on %d connections", len(pids))
	}
	mustOK(t, ts, "/transaction/"+id+"/commit", "")
	if got := sqlValue(t, ts.db, "select string_agg(n::text, ',' order by n) from t"); got != "1,2,3,4,5,6,7,8" {
		t.Errorf("interleaved requests: %s", got)
	}
}

// The server enforces the transaction's timeout: a running statement is cancelled, the
// transaction rolled back, its connection returned, and later requests get 409 P2028.
func TestTransactionTimeoutCancelsAndReleases(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table t (n int)"), nil)
	ended := make(chan txStatus, 1)
	ts.txs.onFinish = func(_ string, s txStatus) { ended <- s }
	id := ts.startTx(t, `{"maxWait":2000,"timeout":1000}`)
	mustOK(t, ts, "/transaction/"+id+"/query", execOf("insert into t values (1)"))
	start := time.Now()
	code, _, body := ts.do(t, http.MethodPost, "/transaction/"+id+"/query", queryOf("select pg_sleep(30)"))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a statement outlived its transaction's timeout by %v", took)
	}
	if code != http.StatusConflict || !strings.Contains(body, `"code":"P2028"`) || !strings.Contains(body, `"operation":"query","timeout":1000`) ||
		!strings.Contains(body, "A query cannot be executed on an expired transaction. The timeout for this transaction was 1000 ms") {
		t.Fatalf("statement running at expiry: %d %s", code, body)
	}
	if s := <-ended; s != txTimedOut {
		t.Fatalf("transaction ended %v", s)
	}
	if got := sqlValue(t, ts.db, "select count(*) from t"); got != "0" {
		t.Errorf("the expired transaction's insert is visible: %s rows", got)
	}
	if got := sqlValue(t, ts.db, "select count(*) from pg_stat_activity where query like '%pg_sleep(30)%' and state = 'active' and pid <> pg_backend_pid()"); got != "0" {
		t.Errorf("the cancelled statement still runs")
	}
	code, _, body = ts.do(t, http.MethodPost, "/transaction/"+id+"/commit", "")
	if code != http.StatusConflict || !strings.Contains(body, "A commit cannot be executed on an expired transaction") || !strings.Contains(body, `"operation":"commit"`) {
		t.Errorf("commit after expiry: %d %s", code, body)
	}
	// Its connection went back to the pool (or was replaced): a new transaction gets one.
	mustOK(t, ts, "/transaction/"+ts.startTx(t, `{"maxWait":2000,"timeout":5000}`)+"/rollback", "")
}

func TestTransactionStartLimits(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, ""), nil)
	// The pool has 4 connections: 4 open transactions hold them all; a fifth waits maxWait.
	var ids []string
	for range 4 {
		ids = append(ids, ts.startTx(t, `{"maxWait":2000,"timeout":60000}`))
	}
	code, _, body := ts.do(t, http.MethodPost, "/transaction/start", `{"maxWait":100,"timeout":5000}`)
	if code != http.StatusConflict || !strings.Contains(body, "Unable to start a transaction in the given time.") {
		t.Errorf("start on a busy pool: %d %s", code, body)
	}
	for _, id := range ids {
		mustOK(t, ts, "/transaction/"+id+"/rollback", "")
	}
	for body, want := range map[string]string{
		`{"maxWait":2000}`: `Transaction API error: timeout is required`,
		`{"timeout":2000}`: `Transaction API error: maxWait is required`,
		`{"maxWait":2000,"timeout":2000,"isolationLevel":"SNAPSHOT"}`: `"meta":{"isolationLevel":"SNAPSHOT"}`,
	} {
		if code, _, out := ts.do(t, http.MethodPost, "/transaction/start", body); code != http.StatusConflict || !strings.Contains(out, want) {
			t.Errorf("start %s: %d %s", body, code, out)
		}
	}
	if code, _, out := ts.do(t, http.MethodPost, "/transaction/start", `{"maxWait":2000,"timeout":2000,"isolationLevel":"CHAOS"}`); code != http.StatusBadRequest {
		t.Errorf("unknown isolation level: %d %s", code, out)
	}

	// Isolation levels reach Postgres; a requested timeout above the cap is shortened to it.
	ts = newTestServer(t, ts.db, func(o *Options) { o.MaxTransactionTimeout = time.Second })
	ended := make(chan time.Duration, 1)
	var started time.Time
	ts.txs.onFinish = func(_ string, s txStatus) { ended <- time.Since(started) }
	started = time.Now()
	id := ts.startTx(t, `{"maxWait":2000,"timeout":600000,"isolationLevel":"SERIALIZABLE"}`)
	out := mustOK(t, ts, "/transaction/"+id+"/query", queryOf("show transaction_isolation"))
	if !strings.Contains(out, `"rows":[["serializable"]]`) {
		t.Errorf("isolation level: %s", out)
	}
	// Waits for the capped one-second timeout.
	if took := <-ended; took > 5*time.Second {
		t.Errorf("a 600 s timeout was not capped at 1 s (ended after %v)", took)
	}
}

// A transaction belongs to the API key that started it.
func TestTransactionBelongsToItsKey(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, ""), nil)
	id := ts.startTx(t, `{"maxWait":2000,"timeout":5000}`)
	code, _, body := ts.do(t, http.MethodPost, "/transaction/"+id+"/query", queryOf("select 1"), "Authorization: Bearer other")
	if code != http.StatusConflict || !strings.Contains(body, "Transaction not found") {
		t.Errorf("another key used the transaction: %d %s", code, body)
	}
	mustOK(t, ts, "/transaction/"+id+"/commit", "")
}

// Close (the pooler's drain) rolls back what is open and refuses new transactions.
func TestCloseRollsBackTransactions(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table t (n int)"), nil)
	id := ts.startTx(t, `{"maxWait":2000,"timeout":60000}`)
	mustOK(t, ts, "/transaction/"+id+"/query", execOf("insert into t values (1)"))
	ts.Close()
	if st := ts.pool.Stats(); st.Active != 0 {
		t.Errorf("%d upstream connections lent out after Close", st.Active)
	}
	if got := sqlValue(t, ts.db, "select count(*) from t"); got != "0" {
		t.Errorf("an open transaction's insert survived Close")
	}
	code, _, body := ts.do(t, http.MethodPost, "/transaction/"+id+"/commit", "")
	if code != http.StatusConflict || !strings.Contains(body, "rolled back") {
		t.Errorf("commit after Close: %d %s", code, body)
	}
	if code, _, body = ts.do(t, http.MethodPost, "/transaction/start", `{"maxWait":2000,"timeout":5000}`); code != http.StatusConflict {
		t.Errorf("start after Close: %d %s", code, body)
	}
}

// Ending a transaction returns its connection to the pool healthy: one after another, many
// transactions reuse the same few connections (none is closed and replaced).
func TestTransactionsReuseConnections(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, ""), nil)
	for i := range 30 {
		id := ts.startTx(t, `{"maxWait":2000,"timeout":5000}`)
		mustOK(t, ts, "/transaction/"+id+"/query", queryOf("select 1"))
		end := "/commit"
		if i%2 == 1 {
			end = "/rollback"
		}
		mustOK(t, ts, "/transaction/"+id+end, "")
	}
	if st := ts.pool.Stats(); st.Connects > 1 || st.Active != 0 {
		t.Errorf("30 transactions in a row opened %d upstream connections (%d still lent out), want 1", st.Connects, st.Active)
	}
}
