package accelerate

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// template builds a templateSql query from a compact description: "?" is a parameter, "(?)"
// a tuple, "[?]" a tuple list; other text is SQL.
func template(t *testing.T, chunkable bool, parts ...string) *dbQuery {
	t.Helper()
	q := &dbQuery{prefix: "$", numbered: true, chunkable: chunkable}
	for _, p := range parts {
		switch p {
		case "?":
			q.fragments = append(q.fragments, fragment{typ: "parameter"})
			q.argTypes = append(q.argTypes, argType{arity: "scalar", scalarType: "int"})
		case "(?)":
			q.fragments = append(q.fragments, fragment{typ: "parameterTuple", itemSeparator: ","})
			q.argTypes = append(q.argTypes, argType{arity: "scalar", scalarType: "int"})
		case "[?]":
			q.fragments = append(q.fragments, fragment{typ: "parameterTupleList", itemPrefix: "(", itemSeparator: ",", itemSuffix: ")", groupSeparator: ","})
			q.argTypes = append(q.argTypes, argType{arity: "tuple", elements: []argType{
				{arity: "scalar", scalarType: "string"}, {arity: "scalar", scalarType: "int"}}})
		default:
			q.fragments = append(q.fragments, fragment{typ: "stringChunk", chunk: p})
		}
	}
	return q
}

func nums(from, to int) []any {
	var out []any
	for i := from; i <= to; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestRenderTemplate(t *testing.T) {
	q := template(t, false, "SELECT * FROM t WHERE a = ", "?", " AND id IN ", "(?)", " AND b IN ", "(?)")
	out, err := renderQuery(q, []any{7.0, nums(1, 3), []any{}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].sql != "SELECT * FROM t WHERE a = $1 AND id IN ($2,$3,$4) AND b IN (NULL)" {
		t.Fatalf("rendered %+v", out)
	}
	if !reflect.DeepEqual(out[0].args, []any{7.0, 1.0, 2.0, 3.0}) || len(out[0].argTypes) != 4 {
		t.Errorf("args %v types %v", out[0].args, out[0].argTypes)
	}

	ins := template(t, false, "INSERT INTO t (a,b) VALUES ", "[?]")
	out, err = renderQuery(ins, []any{[]any{[]any{"x", 1.0}, []any{"y", 2.0}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].sql != "INSERT INTO t (a,b) VALUES ($1,$2),($3,$4)" || len(out[0].argTypes) != 4 || out[0].argTypes[2].scalarType != "string" {
		t.Errorf("tuple list rendered %q with %v", out[0].sql, out[0].argTypes)
	}
	for _, bad := range [][]any{{[]any{}}, {"not a list"}, {[]any{"x"}}} {
		if _, err := renderQuery(ins, bad, 0); err == nil {
			t.Errorf("tuple list %v accepted", bad)
		}
	}
	if _, err := renderQuery(q, []any{1.0}, 0); err == nil {
		t.Error("fragments reading past the parameters accepted")
	}
}

func TestChunking(t *testing.T) {
	// An IN list is split so that each statement, with the other parameter, stays within 10.
	q := template(t, true, "SELECT * FROM t WHERE a = ", "?", " AND id IN ", "(?)")
	out, err := renderQuery(q, []any{0.0, nums(1, 25)}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var sqls []string
	for _, r := range out {
		sqls = append(sqls, r.sql)
		if len(r.args) > 10 || r.args[0] != 0.0 {
			t.Errorf("chunk %q has %d args starting %v", r.sql, len(r.args), r.args[0])
		}
	}
	if len(out) != 3 || !strings.HasSuffix(sqls[2], "IN ($2,$3,$4,$5,$6,$7,$8)") {
		t.Errorf("IN list chunks: %q", sqls)
	}

	// A multi-row INSERT is split by rows.
	ins := template(t, true, "INSERT INTO t (a,b) VALUES ", "[?]")
	var rows []any
	for i := range 12 {
		rows = append(rows, []any{"r", float64(i)})
	}
	out, err = renderQuery(ins, []any{rows}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || len(out[0].args) != 10 || len(out[2].args) != 4 {
		t.Errorf("insert chunks: %d statements (%v)", len(out), out)
	}

	// Not chunkable, or nothing to split: one statement, refused when it is too large.
	_, err = renderQuery(template(t, false, "SELECT ", "(?)"), []any{nums(1, 11)}, 10)
	var api *apiError
	if !errors.As(err, &api) || api.code != "P2029" {
		t.Errorf("too many parameters: %v", err)
	}
	out, err = renderQuery(q, []any{0.0, nums(1, 5)}, 10)
	if err != nil || len(out) != 1 {
		t.Errorf("a query within the limit was split: %v %v", out, err)
	}
}

// A template of text and single parameters is rendered once; what it renders per request is
// what the general renderer makes, limits and errors included.
func TestPrerenderedTemplate(t *testing.T) {
	for _, c := range []struct {
		name     string
		q        *dbQuery
		args     []any
		maxBind  int
		rendered bool // whether prerender applies
	}{
		{"findUnique", template(t, true, "SELECT a FROM t WHERE (id = ", "?", " AND 1=1) LIMIT ", "?", " OFFSET ", "?"), []any{7.0, "1", "0"}, 32766, true},
		{"more args than parameters", template(t, false, "SELECT ", "?"), []any{1.0, 2.0}, 0, true},
		{"over the bind limit", template(t, true, "SELECT ", "?", ",", "?", ",", "?"), []any{1.0, 2.0, 3.0}, 2, true},
		{"a list value in a parameter", template(t, false, "SELECT ", "?"), []any{[]any{1.0, 2.0}}, 0, true},
		{"no parameters", template(t, false, "SELECT 1"), nil, 0, true},
		{"a tuple", template(t, true, "SELECT ", "?", " IN ", "(?)"), []any{1.0, nums(1, 3)}, 0, false},
		{"too few arguments", template(t, false, "SELECT ", "?", ",", "?"), []any{1.0}, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := renderQuery(c.q, c.args, c.maxBind)
			c.q.args = c.args // the plan's arguments, before evaluation
			c.q.prerender()
			if (c.q.static != nil) != c.rendered {
				t.Fatalf("prerendered: %v, want %v", c.q.static != nil, c.rendered)
			}
			got, err := renderQuery(c.q, c.args, c.maxBind)
			if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Errorf("prerendered %+v, %v; rendered %+v, %v", got, err, want, wantErr)
			}
		})
	}
	tupleType := template(t, false, "SELECT ", "?")
	tupleType.argTypes = []argType{{arity: "tuple", elements: []argType{{arity: "scalar"}, {arity: "scalar"}}}}
	tupleType.args = []any{1.0}
	if tupleType.prerender(); tupleType.static != nil {
		t.Error("a parameter of tuple type was prerendered (its malformation must be reported per request)")
	}
}

// Rows become records keyed by column name: a repeated name keeps its first position and its
// last value, and a field added to one record (a join's children) stays in that record.
func TestRowRecords(t *testing.T) {
	many := make([]string, indexFrom+2)
	for i := range many {
		many[i] = fmt.Sprint("c", i)
	}
	for _, columns := range [][]string{{"id", "name", "id"}, many} {
		rs := &resultSet{columns: columns}
		for r := range 3 {
			row := make([]any, len(columns))
			for c := range columns {
				row[c] = float64(10*r + c)
			}
			rs.rows = append(rs.rows, row)
		}
		recs := rowRecords(rs)
		first := recs[0].(*record)
		first.set("added", true)
		for r, v := range recs {
			want := newRecord(len(columns))
			for c, name := range columns {
				want.set(name, float64(10*r+c))
			}
			if r == 0 {
				want.set("added", true)
			}
			if !deepEqual(v, want) || !reflect.DeepEqual(v.(*record).fields, want.fields) {
				t.Errorf("%v row %d: %v, want %v", columns[:3], r, v.(*record).fields, want.fields)
			}
			if got, _ := v.(*record).get(columns[len(columns)-1]); got != float64(10*r+len(columns)-1) {
				t.Errorf("%v row %d: lookup of the last column = %v", columns[:3], r, got)
			}
		}
	}
}

func TestEncodeParams(t *testing.T) {
	d := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	dt := func(db string) argType { return argType{arity: "scalar", scalarType: "datetime", dbType: db} }
	for _, c := range []struct {
		v      any
		typ    argType
		want   string
		binary bool
		null   bool
	}{
		{"2024-01-02T03:04:05.006Z", dt("TIMESTAMP"), "2024-01-02 03:04:05.006+00:00", false, false},
		{d, dt("DATE"), "2024-01-02", false, false},
		{d, dt("TIME"), "03:04:05.006", false, false},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), dt(""), "2024-01-02 03:04:05+00:00", false, false},
		{"AQID", argType{arity: "scalar", scalarType: "bytes"}, "\x01\x02\x03", true, false},
		{nil, argType{arity: "scalar", scalarType: "int"}, "", false, true},
		{true, argType{arity: "scalar", scalarType: "boolean"}, "true", false, false},
		{1e21, argType{arity: "scalar", scalarType: "float"}, "1e+21", false, false},
		{"9007199254740993", argType{arity: "scalar", scalarType: "bigint"}, "9007199254740993", false, false},
		{[]any{"a", `b"c\d`, nil, 1.5, []any{"x"}}, argType{arity: "list", scalarType: "string"}, `{"a","b\"c\\d",NULL,"1.5",{"x"}}`, false, false},
		{[]any{"2024-01-02T00:00:00Z"}, argType{arity: "list", scalarType: "datetime", dbType: "DATE"}, `{"2024-01-02"}`, false, false},
		{recordOf("a", 1.0), argType{arity: "scalar", scalarType: "json"}, `{"a":1}`, false, false},
	} {
		p, err := encodeParams([]any{c.v}, []argType{c.typ})
		if err != nil {
			t.Errorf("%v: %v", c.v, err)
			continue
		}
		binary := len(p.formats) > 0 && p.formats[0] == 1
		if string(p.values[0]) != c.want || binary != c.binary || (p.values[0] == nil) != c.null {
			t.Errorf("%#v as %+v: got %q binary=%v", c.v, c.typ, p.values[0], binary)
		}
	}
	if _, err := encodeParams([]any{"not a date"}, []argType{dt("TIMESTAMP")}); err == nil {
		t.Error("an invalid DateTime parameter was accepted")
	}
	// The text values share a buffer: each keeps its own bytes, an empty one is not NULL.
	long := strings.Repeat("x", 100)
	args := []any{"", 1.0, nil, "AQID", long, []any{"a", []byte{1}}, true}
	types := []argType{{arity: "scalar"}, {arity: "scalar"}, {arity: "scalar"}, {arity: "scalar", scalarType: "bytes"},
		{arity: "scalar"}, {arity: "list"}, {arity: "scalar"}}
	p, err := encodeParams(args, types)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "1", "", "\x01\x02\x03", long, `{"a",\\x01}`, "true"}
	for i, v := range p.values {
		if string(v) != want[i] || (v == nil) != (i == 2) || (p.formats[i] == 1) != (i == 3) {
			t.Errorf("parameter %d: %q (nil %v, format %d), want %q", i+1, v, v == nil, p.formats[i], want[i])
		}
	}
}

func TestResultValues(t *testing.T) {
	dec := func(oid uint32, text string) any {
		t.Helper()
		d, err := decoderFor(oid)
		if err != nil {
			t.Fatalf("oid %d: %v", oid, err)
		}
		v, err := d.decode(text)
		if err != nil {
			t.Fatalf("oid %d %q: %v", oid, text, err)
		}
		return v
	}
	for _, c := range []struct {
		oid  uint32
		text string
		want any
	}{
		{oidInt4, "42", 42.0},
		{oidInt8, "9007199254740993", "9007199254740993"},
		{oidFloat8, "NaN", "NaN"},
		{oidBool, "t", true},
		{oidNumeric, "1.50", "1.50"},
		{oidMoney, "$1.00", "1.00"},
		{oidBytea, `\x010203`, []byte{1, 2, 3}},
		{oidBytea, `a\\b\001`, []byte{'a', '\\', 'b', 1}},
		{oidTimestamp, "2026-11-29 11:58:43.008", "2026-11-29T11:58:43.008+00:00"},
		{oidTimestamptz, "2026-11-29 11:58:45.513395+00", "2026-11-29T11:58:45.513395+00:00"},
		{oidTimestamptz, "2026-11-29 13:58:45+02", "2026-11-29T11:58:45+00:00"}, // a non-UTC session
		{oidTimestamptz, "infinity", "infinity+00:00"},
		{oidTimetz, "03:04:05+05:30", "03:04:05"},
		{oidInt4Array, "{1,NULL,3}", []any{1.0, nil, 3.0}},
		{oidTextArray, `{"a b","c\"d",NULL,e}`, []any{"a b", `c"d`, nil, "e"}},
		{oidTextArray, `{{a,b},{c,d}}`, []any{[]any{"a", "b"}, []any{"c", "d"}}},
		{oidInt8Array, "[0:1]={5,6}", []any{"5", "6"}},
		{oidByteaArray, `{"\\x01",NULL}`, []any{[]byte{1}, nil}},
		{oidTstzArray, `{"2024-01-02 03:04:05+00"}`, []any{"2024-01-02T03:04:05+00:00"}},
		{firstUserOID + 7, "ADMIN", "ADMIN"},
	} {
		got := dec(c.oid, c.text)
		if f, ok := got.(float64); ok && math.IsNaN(f) && c.want == "NaN" {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("oid %d %q = %#v, want %#v", c.oid, c.text, got, c.want)
		}
	}
	if _, err := decoderFor(1186); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("interval column: %v", err)
	}
	d, _ := decoderFor(oidTextArray)
	if _, err := d.decode(`{"unterminated`); err == nil {
		t.Error("a broken array literal was read")
	}
}
