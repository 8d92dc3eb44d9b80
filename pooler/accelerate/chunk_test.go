package accelerate

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// insertManyBody is a createMany plan as the client compiles it: one INSERT whose VALUES is a
// tuple list of placeholders, chunkable, with rows x 2 params.
func insertManyBody(rows int, failLast bool) string {
	var tuples, params strings.Builder
	for i := range rows {
		if i > 0 {
			tuples.WriteByte(',')
			params.WriteByte(',')
		}
		fmt.Fprintf(&tuples, `[{"prisma__type":"param","prisma__value":{"name":"%%%d","type":"String"}},{"prisma__type":"param","prisma__value":{"name":"%%%d","type":"Int"}}]`, 2*i+1, 2*i+2)
		n := i
		if failLast && i == rows-1 {
			n = -1 // violates the CHECK constraint
		}
		fmt.Fprintf(&params, `"%%%d":"row-%d","%%%d":%d`, 2*i+1, i, 2*i+2, n)
	}
	return `{"model":"Item","operation":"createMany","params":{` + params.String() + `},"plan":{"type":"dataMap","args":{"expr":{"type":"execute","args":{"type":"templateSql",` +
		`"fragments":[{"type":"stringChunk","chunk":"INSERT INTO items (name, n) VALUES "},{"type":"parameterTupleList","itemPrefix":"(","itemSeparator":",","itemSuffix":")","groupSeparator":","}],` +
		`"args":[[` + tuples.String() + `]],"argTypes":[{"arity":"tuple","elements":[{"arity":"scalar","scalarType":"string","dbType":"TEXT"},{"arity":"scalar","scalarType":"int","dbType":"INTEGER"}]}],` +
		`"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":true}},"structure":{"type":"affectedRows"},"enums":{}}}}`
}

// A write with more bind values than one statement takes is split into statements within
// the bind limit, run in one transaction: all rows or none.
func TestChunkedWriteIsAtomic(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table items (name text, n int check (n >= 0))"), nil)
	body := insertManyBody(34_000, false)
	start := time.Now()
	code, _, out := ts.do(t, http.MethodPost, "/query", body, "X-Capture-Telemetry: query")
	t.Logf("68,000 bind values (%d KiB request) in %v", len(body)>>10, time.Since(start))
	if code != http.StatusOK || !strings.HasPrefix(out, `{"data":{"count":34000}`) {
		t.Fatalf("createMany: %d %.300s", code, out)
	}
	// Three INSERTs (32766 + 32766 + 2468 values) and the COMMIT of their transaction.
	if n := strings.Count(out, `"query":"INSERT INTO items`); n != 3 || !strings.Contains(out, `"query":"COMMIT"`) {
		t.Errorf("%d INSERT statements logged (COMMIT logged: %v)", n, strings.Contains(out, `"query":"COMMIT"`))
	}
	if got := sqlValue(t, ts.db, "select count(*) from items"); got != "34000" {
		t.Errorf("%s rows written", got)
	}

	// With a lower advertised limit the statements get smaller; a failure in the last chunk
	// undoes the first ones.
	small := newTestServer(t, ts.db, func(o *Options) { o.MaxBindValues = 100 })
	if code, _, out := small.do(t, http.MethodGet, "/connection-info", ""); code != http.StatusOK ||
		out != `{"provider":"postgres","connectionInfo":{"supportsRelationJoins":true,"maxBindValues":100}}` {
		t.Errorf("connection-info: %d %s", code, out)
	}
	code, _, out = small.do(t, http.MethodPost, "/query", insertManyBody(120, true))
	if code != http.StatusBadRequest || !strings.Contains(out, `"code":"P2039"`) || !strings.Contains(out, "23514") {
		t.Errorf("failing chunked write: %d %.300s", code, out)
	}
	// None of the 120 rows remains, though the chunks before the failing one succeeded.
	if got := sqlValue(t, ts.db, "select count(*) from items"); got != "34000" {
		t.Errorf("a failed chunked write left rows behind: %s rows, want 34000", got)
	}
}
