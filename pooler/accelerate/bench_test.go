package accelerate

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
)

// captureBody returns the request body of one exchange of a capture, as the client sent it.
func captureBody(tb testing.TB, file string, exchange int) []byte {
	tb.Helper()
	data, err := os.ReadFile("testdata/reference/" + file)
	if err != nil {
		tb.Fatal(err)
	}
	var c struct {
		Exchanges []struct {
			Body json.RawMessage `json:"body"`
		} `json:"exchanges"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		tb.Fatal(err)
	}
	return c.Exchanges[exchange].Body
}

// BenchmarkFindUnique measures one findUnique (the plan of capture 04 for one id) through the
// HTTP handler: parsing, planning, one query on a pooled connection, mapping, encoding.
func BenchmarkFindUnique(b *testing.B) {
	schema, err := os.ReadFile("testdata/schema.sql")
	if err != nil {
		b.Fatal(err)
	}
	db := newDatabase(b, string(schema))
	execIn(b, db, `insert into acc_users (email, uid, cid, "updatedAt") values ('u1@x.io', 'u', 'c', now())`)
	ts := newTestServer(b, db, nil)
	body := bytes.Replace(captureBody(b, "04_findUnique_x3_parallel.json", 0), []byte(`"%2": 2, "%3": 3`), []byte(`"%2": 1, "%3": 1`), 1)
	client := &http.Client{}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, ts.url+"/query", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer
			_, _ = out.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %s", resp.StatusCode, out.String())
			}
		}
	})
}
