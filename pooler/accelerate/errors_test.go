package accelerate

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The SQLSTATE → Prisma error table of Prisma's pg driver adapter and query engine runtime.
func TestDatabaseErrorMapping(t *testing.T) {
	for _, c := range []struct {
		err       pgconn.PgError
		raw       bool
		code, msg string
		cause     string // JSON of meta.driverAdapterError.cause
	}{
		{pgconn.PgError{Code: "23505", Message: `duplicate key value violates unique constraint "t_pkey"`, ConstraintName: "t_pkey", TableName: "t"}, false,
			"P2002", "Unique constraint failed on the constraint: `t_pkey`",
			`{"originalCode":"23505","originalMessage":"duplicate key value violates unique constraint \"t_pkey\"","kind":"UniqueConstraintViolation","constraint":{"index":"t_pkey"},"table":"t"}`},
		{pgconn.PgError{Code: "23505", Message: "dup", Detail: "Key (a, b)=(1, 2) already exists."}, false,
			"P2002", "Unique constraint failed on the fields: (`a`, `b`)",
			`{"originalCode":"23505","originalMessage":"dup","kind":"UniqueConstraintViolation","constraint":{"fields":["a","b"]}}`},
		{pgconn.PgError{Code: "23503", Message: "fk", ConstraintName: "p_a_fkey"}, false, "P2003", "Foreign key constraint violated on the constraint: `p_a_fkey`",
			`{"originalCode":"23503","originalMessage":"fk","kind":"ForeignKeyConstraintViolation","constraint":{"index":"p_a_fkey"}}`},
		{pgconn.PgError{Code: "23001", Message: "restrict", ColumnName: "a"}, false, "P2003", "Foreign key constraint violated on the fields: (`a`)", ""},
		{pgconn.PgError{Code: "23502", Message: "null"}, false, "P2011", "Null constraint violation on the (not available)", ""},
		{pgconn.PgError{Code: "22001", Message: "too long", ColumnName: "s"}, false, "P2000", "The provided value for the column is too long for the column's type. Column: s", ""},
		{pgconn.PgError{Code: "22003", Message: "smallint out of range"}, false, "P2020", "Value out of range for the type: smallint out of range", ""},
		{pgconn.PgError{Code: "22P02", Message: `invalid input syntax for type integer: "x"`}, false, "P2007", `Invalid input value: invalid input syntax for type integer: "x"`, ""},
		{pgconn.PgError{Code: "42P01", Message: `relation "nope" does not exist`}, false, "P2021", "The table `nope` does not exist in the current database.", ""},
		{pgconn.PgError{Code: "42703", Message: `column "a""b" does not exist`}, false, "P2022", "The column `a\"b` does not exist in the current database.", ""},
		{pgconn.PgError{Code: "40001", Message: "could not serialize"}, false, "P2034", "Transaction failed due to a write conflict or a deadlock. Please retry your transaction", ""},
		{pgconn.PgError{Code: "40P01", Message: "deadlock detected"}, false, "P2034", "Transaction failed due to a write conflict or a deadlock. Please retry your transaction", ""},
		{pgconn.PgError{Code: "53300", Message: "query_wait_timeout"}, false, "P2037", "Too many database connections opened: query_wait_timeout", ""},
		{pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "app"`}, false, "P1000", "Authentication failed against the database server, the provided database credentials for `app` are not valid", ""},
		{pgconn.PgError{Code: "3D000", Message: `database "shop" does not exist`}, false, "P1003", "Database `shop` does not exist on the database server", ""},
		{pgconn.PgError{Code: "28000", Message: `no pg_hba.conf entry for host "1.2.3.4", user "u", database "shop", no encryption`}, false, "P1010", "User was denied access on the database `shop`", ""},
		{pgconn.PgError{Code: "57014", Severity: "ERROR", Message: "canceling statement due to user request"}, false, "P2039",
			"Database error. Code: `57014`. Message: `canceling statement due to user request`",
			`{"originalCode":"57014","originalMessage":"canceling statement due to user request","kind":"postgres","code":"57014","severity":"ERROR","message":"canceling statement due to user request"}`},
		{pgconn.PgError{Code: "42P01", Message: `relation "nope" does not exist`}, true, "P2010", "Raw query failed. Code: `42P01`. Message: `relation \"nope\" does not exist`", ""},
	} {
		err := c.err
		api := userFacingDBError(classifyPgError(&err), c.raw)
		if api.status != http.StatusBadRequest || api.code != c.code || api.message != c.msg {
			t.Errorf("%s (raw=%v): got %d %s %q, want %s %q", c.err.Code, c.raw, api.status, api.code, api.message, c.code, c.msg)
		}
		if c.cause != "" {
			dae, _ := api.meta.(*record).value("driverAdapterError").(*record)
			if got, _ := jsonStringify(dae.value("cause")); got != c.cause {
				t.Errorf("%s cause:\n got %s\nwant %s", c.err.Code, got, c.cause)
			}
		}
	}
}

// templated is a one-statement query plan with parameters (a templateSql query node).
func templated(kind, sql string, params map[string]any) string {
	var frags, args, types, ps []string
	parts := strings.Split(sql, "?")
	for i, p := range parts {
		frags = append(frags, `{"type":"stringChunk","chunk":`+mustJSON(p)+`}`)
		if i < len(parts)-1 {
			name := "%" + string(rune('1'+i))
			frags = append(frags, `{"type":"parameter"}`)
			args = append(args, `{"prisma__type":"param","prisma__value":{"name":"`+name+`","type":"Any"}}`)
			types = append(types, `{"arity":"scalar","scalarType":"unknown","dbType":null}`)
			ps = append(ps, mustJSON(name)+":"+mustJSON(params[name]))
		}
	}
	return `{"model":"E","operation":"createOne","params":{` + strings.Join(ps, ",") + `},"plan":{"type":"` + kind + `","args":{"type":"templateSql",` +
		`"fragments":[` + strings.Join(frags, ",") + `],"args":[` + strings.Join(args, ",") + `],"argTypes":[` + strings.Join(types, ",") + `],` +
		`"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":false}}}`
}

func TestErrorAnswers(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, "create table e (id int primary key, s varchar(3) not null, n smallint)"), func(o *Options) {
		o.QueryTimeout = 1500 * time.Millisecond // the time the timeout case waits
		o.MaxResponseBytes = 2000
		o.MaxRequestBytes = 64 << 10
	})
	for _, c := range []struct {
		name, body   string
		headers      []string
		status       int
		code, within string
	}{
		{"null constraint", templated("execute", "insert into e (id, s) values (?, null)", map[string]any{"%1": 1}), nil, 400, "P2011", ""},
		{"value too long", templated("execute", "insert into e (id, s) values (?, ?)", map[string]any{"%1": 1, "%2": "toolong"}), nil, 400, "P2000", ""},
		{"out of range", templated("execute", "insert into e (id, s, n) values (1, 'a', ?)", map[string]any{"%1": 99999}), nil, 400, "P2020", ""},
		{"invalid input", templated("query", "select * from e where id = ?", map[string]any{"%1": "x"}), nil, 400, "P2007", ""},
		{"missing column", templated("query", "select nope from e where id = ?", map[string]any{"%1": 1}), nil, 400, "P2022", "The column `nope` does not exist"},
		{"raw error", queryOf("select * from nope"), nil, 400, "P2010", "Raw query failed. Code: `42P01`"},
		{"unsupported node", `{"operation":"findMany","params":{},"plan":{"type":"vectorSearch","args":{}}}`, []string{"Prisma-Engine-Hash: 7.99.0"}, 400, "P6006",
			`This query uses query plan node \"vectorSearch\", which this edgepool server does not support (Prisma client 7.99.0`},
		{"unsupported field", `{"operation":"findMany","params":{},"plan":{"type":"unit","args":null,"hint":"x"}}`, nil, 400, "P6006", `field \"hint\" of a \"unit\" node`},
		{"malformed plan", `{"operation":"findMany","params":{},"plan":{"type":"get","args":{}}}`, nil, 400, "P6005", "malformed query plan at plan.args.name"},
		{"not JSON", `{"operation":`, nil, 400, "P6005", "invalid JSON"},
		{"no params", `{"operation":"findMany","plan":{"type":"unit"}}`, nil, 400, "P6005", `\"params\" must be an object`},
		{"no key", queryOf("select 1"), []string{"Authorization:"}, 401, "P6002", "authentication required"},
		{"wrong key", queryOf("select 1"), []string{"Authorization: Bearer nope"}, 401, "P6002", "invalid API key"},
		{"statement timeout", queryOf("select pg_sleep(10)"), nil, 422, "P6004", "Query timeout exceeded"},
		{"response too large", queryOf("select repeat('x', 100) from generate_series(1, 100)"), nil, 422, "P6009", "Response size limit exceeded"},
		{"request too large", queryOf("select '" + strings.Repeat("x", 70<<10) + "'"), nil, 413, "P6005", "request body too large"},
		{"plan failure", `{"operation":"findUnique","params":{},"plan":{"type":"unique","args":{"type":"value","args":[1,2]}}}`, nil, 500, "", "Expected zero or one element, got 2"},
	} {
		start := time.Now()
		code, _, body := ts.do(t, http.MethodPost, "/query", c.body, c.headers...)
		var r struct {
			Code  string
			Error string
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || code != c.status || r.Code != c.code || !strings.Contains(body, c.within) {
			t.Errorf("%s: %d %.400s; want %d %s containing %q", c.name, code, body, c.status, c.code, c.within)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %v", c.name, took)
		}
	}
	if code, _, _ := ts.do(t, http.MethodGet, "/query", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /query: %d", code)
	}
	// The timed-out statement was cancelled, not left running on a pooled connection.
	if got := sqlValue(t, ts.db, "select count(*) from pg_stat_activity where query = 'select pg_sleep(10)' and state = 'active'"); got != "0" {
		t.Errorf("the timed-out statement still runs")
	}
}
