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
		for _, v := range q.params {
			if _, err := appendJSON(nil, v); err != nil {
				t.Fatalf("a parsed parameter does not encode: %v", err)
			}
		}
	})
}
