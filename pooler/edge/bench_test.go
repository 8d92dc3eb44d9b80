package edge

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkSQLSelectOne measures POST /sql for a one-row select through the real pool, with
// about 50 concurrent requests (go test -bench SQLSelectOne -cpuprofile cpu.out ./pooler/edge/).
func BenchmarkSQLSelectOne(b *testing.B) {
	ts, _ := newTestServer(b, 10, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	b.SetParallelism(25) // × GOMAXPROCS (2 here) ≈ 50 concurrent requests
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/sql", strings.NewReader(`{"query": "select 1 as one"}`))
			req.Header.Set("Neon-Connection-String", "postgres://app:"+testKey+"@localhost/postgres")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
