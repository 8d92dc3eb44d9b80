package accelerate

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// FuzzParseQueryRequest feeds arbitrary bodies to the request and plan parser: it must answer
// an error or a plan, never panic, and accept only JSON that encoding/json accepts too.
// Seeds: the request bodies of the captures.
func FuzzParseQueryRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/reference/*.json")
	for _, file := range files[:min(len(files), 30)] {
		f.Add(captureBody(f, filepath.Base(file), 0))
	}
	f.Add([]byte(`{"operation":"x","params":{"%1":[1,"a",null,{"b":true}]},"plan":{"type":"value","args":[{"prisma__type":"param","prisma__value":{"name":"%1","type":"DateTime"}}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := parseQueryRequest(body, nil)
		if _, jsonErr := parseJSON(body); jsonErr == nil && !json.Valid(body) {
			t.Fatalf("accepted JSON that encoding/json rejects: %q", body)
		}
		if err != nil {
			return
		}
		writes(q.plan)
		for _, f := range q.params.fields {
			if _, err := appendJSON(nil, f.value); err != nil {
				t.Fatalf("a parsed parameter does not encode: %v", err)
			}
		}
	})
}

// FuzzReformatJSON checks that rewriting a JSON document token by token gives what building
// it and writing it gives (JSON.stringify(JSON.parse(s))), errors included.
func FuzzReformatJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, {"b": true}]}`, `{"b":1,"a":2,"b":3}`, `{"2":1,"1":2,"x":3}`, ` [1.0, -0, 1e400, "\u00e9\/"] `,
		`"x\ud800y"`, `{"a":{}}x`, `[1,]`, `"\u0001"`, `{"a":null,"b":false}`, `1E2`, `{"01":1,"4294967295":2,"4294967294":3}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gotErr := reformatJSON(s)
		var want string
		v, wantErr := parseJSON([]byte(s))
		if wantErr == nil {
			want, wantErr = jsonStringify(v)
		}
		if got != want || (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
			t.Fatalf("%q: rewritten %q, %v; built %q, %v", s, got, gotErr, want, wantErr)
		}
	})
}
