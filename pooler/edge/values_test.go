package edge

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestAppendValue(t *testing.T) {
	cases := []struct {
		oid        uint32
		text, want string
	}{
		{pgtype.BoolOID, "t", "true"},
		{pgtype.BoolOID, "f", "false"},
		{pgtype.Int4OID, "-12", "-12"},
		{pgtype.Float8OID, "1e+300", "1e+300"},
		{pgtype.Float8OID, "Infinity", `"Infinity"`},
		{pgtype.Int8OID, "9007199254740993", `"9007199254740993"`},
		{pgtype.NumericOID, "1.10", `"1.10"`},
		{pgtype.JSONBOID, `{"a": 1}`, `{"a": 1}`},
		{pgtype.TextOID, "a\"b\\c\n\x01é", `"a\"b\\c\n\u0001é"`},
		{pgtype.TextOID, "bad\xffutf8", `"bad\ufffdutf8"`},
		{pgtype.Int4ArrayOID, "{1,NULL,3}", "[1,null,3]"},
		{pgtype.Int4ArrayOID, "{}", "[]"},
		{pgtype.Int4ArrayOID, "{{1,2},{3,4}}", "[[1,2],[3,4]]"},
		{pgtype.Int4ArrayOID, "[0:1]={5,6}", "[5,6]"},
		{pgtype.TextArrayOID, `{"a,b","c\"d","NULL",NULL,plain}`, `["a,b","c\"d","NULL",null,"plain"]`},
		{pgtype.BoolArrayOID, "{t,f}", "[true,false]"},
		{pgtype.JSONBArrayOID, `{"{\"a\": 1}",null}`, `[{"a": 1},null]`},
		{pgtype.Int8ArrayOID, "{1,2}", `["1","2"]`},
		{pgtype.Int4ArrayOID, "{1,2", `"{1,2"`}, // malformed: kept as a string
	}
	for _, c := range cases {
		kind, elem := columnKind(c.oid)
		got := string(appendValue(nil, []byte(c.text), kind, elem))
		if got != c.want {
			t.Errorf("oid %d %q: got %s, want %s", c.oid, c.text, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("oid %d %q: invalid JSON %s", c.oid, c.text, got)
		}
	}
}

func TestParamsToText(t *testing.T) {
	var params []json.RawMessage
	if err := json.Unmarshal([]byte(`[null, "s", true, 1.50, {"b": [1, 2]}, [1, null, "x\"y", [true]], []]`), &params); err != nil {
		t.Fatal(err)
	}
	got, err := paramsToText(params)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"<NULL>", "s", "true", "1.50", `{"b":[1,2]}`, `{"1",NULL,"x\"y",{"true"}}`, "{}"}
	for i := range want {
		g := "<NULL>"
		if got[i] != nil {
			g = string(got[i])
		}
		if g != want[i] {
			t.Errorf("param %d: got %s, want %s", i, g, want[i])
		}
	}
}

func TestSplitCommandTag(t *testing.T) {
	for tag, want := range map[string]struct {
		cmd string
		n   int64
	}{"SELECT 3": {"SELECT", 3}, "INSERT 0 5": {"INSERT", 5}, "CREATE TABLE": {"CREATE", -1}, "": {"", -1}, "BEGIN": {"BEGIN", -1}} {
		cmd, n := splitCommandTag(tag)
		if cmd != want.cmd || n != want.n {
			t.Errorf("%q: got %q %d, want %q %d", tag, cmd, n, want.cmd, want.n)
		}
	}
}

// FuzzArrayJSON checks that any text a column may carry becomes valid JSON, whatever its type.
func FuzzArrayJSON(f *testing.F) {
	for _, s := range []string{"{1,2}", `{"a\"",NULL}`, "{{1},{2}}", "[1:2]={a,b}", "{", "}", `{"\`, "{,}", "{a;b}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, oid := range []uint32{pgtype.Int4ArrayOID, pgtype.TextArrayOID, pgtype.JSONBArrayOID, pgtype.BoolArrayOID, pgtype.Float8OID, pgtype.JSONOID} {
			kind, elem := columnKind(oid)
			if out := appendValue(nil, []byte(s), kind, elem); !json.Valid(out) {
				t.Fatalf("oid %d %q: invalid JSON %s", oid, s, out)
			}
		}
	})
}

// FuzzParseBody checks that no request body crashes the parser.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{`{"query":"select 1","params":[1,"a",null,[1,[2]],{"a":1}]}`, `{"queries":[{"query":"x"}]}`, `{`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parseBody([]byte(s))
	})
}
