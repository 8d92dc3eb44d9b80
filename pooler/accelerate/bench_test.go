package accelerate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgepool/edgepool/pooler/edge"
)

// captureBody returns the request body of one exchange of a capture, as compact as the client
// sends it (nil for a request without one).
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
	raw := c.Exchanges[exchange].Body
	if len(raw) == 0 { // a GET
		return nil
	}
	var body bytes.Buffer
	if err := json.Compact(&body, raw); err != nil {
		tb.Fatal(err)
	}
	return body.Bytes()
}

// replaceOnce replaces old, which must occur in s.
func replaceOnce(tb testing.TB, s []byte, old, replacement string) []byte {
	tb.Helper()
	if !bytes.Contains(s, []byte(old)) {
		tb.Fatalf("%q not found", old)
	}
	return bytes.Replace(s, []byte(old), []byte(replacement), 1)
}

// benchDatabase is a database with the captures' schema and rows the benchmark requests find:
// users 1-10 (admins, every column set) with three published posts each.
func benchDatabase(tb testing.TB) string {
	tb.Helper()
	schema, err := os.ReadFile("testdata/schema.sql")
	if err != nil {
		tb.Fatal(err)
	}
	db := newDatabase(tb, string(schema))
	execIn(tb, db, `insert into acc_users (email, name, role, big, blob, balance, profile, uid, cid, "updatedAt")
		select 'u' || i || '@x.io', 'User ' || i, 'ADMIN', 9007199254740993, '\x010203', 10.5, '{"a":[1,{"b":true}]}',
			'uid-' || i, 'cid-' || i, now()
		from generate_series(1, 10) i;
		insert into acc_posts (id, title, views, published, "authorId")
		select 'p' || u || '-' || k, 'Post ' || k, 10 * k, true, u from generate_series(1, 10) u, generate_series(1, 3) k`)
	return db
}

// benchRequests are the bodies the benchmarks send, from the captures, with parameters that
// find rows in benchDatabase.
func benchRequests(tb testing.TB) []struct {
	name string
	body []byte
} {
	return []struct {
		name string
		body []byte
	}{
		// findUniqueOrThrow by id: one statement, every column type, validate + unique + dataMap.
		{"findUnique", replaceOnce(tb, captureBody(tb, "06_findUniqueOrThrow_missing.json", 0), `"%1":99`, `"%1":1`)},
		// Three parallel findUnique calls compacted into one IN query.
		{"findUniqueBatch", replaceOnce(tb, captureBody(tb, "04_findUnique_x3_parallel.json", 0), `"%2":2,"%3":3`, `"%2":4,"%3":7`)},
		// findMany with a where, an order, a take and an included relation: two statements, a join.
		{"findManyInclude", captureBody(tb, "07_findMany_where_orderBy_take_include.json", 0)},
	}
}

// BenchmarkFindUnique measures one findUniqueOrThrow through a real HTTP client and server:
// the request, planning, one query on a pooled connection, mapping, encoding, the response.
func BenchmarkFindUnique(b *testing.B) {
	ts := newTestServer(b, benchDatabase(b), nil)
	body := benchRequests(b)[0].body
	client := &http.Client{}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var out bytes.Buffer
		for pb.Next() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, ts.url+"/query", bytes.NewReader(body))
			setClientHeaders(req.Header)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			_, _ = out.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %s", resp.StatusCode, out.String())
			}
		}
	})
}

// setClientHeaders sets the headers Prisma 7.10's accelerateUrl client sends with a query.
func setClientHeaders(h http.Header) {
	h.Set("Authorization", "Bearer "+testKey)
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("Prisma-Engine-Hash", "7.10.1")
	h.Set("X-Capture-Telemetry", "error")
}

// BenchmarkQuery measures POST /query in the server's handler alone (no HTTP client, no
// connection handling), so allocations, cpu-ns/op and profiles show this package's own cost
// per request: on a pooled connection to PostgreSQL ("postgres"), and on a connection whose
// backend replays the database's answers from memory ("replayed", replay_test.go), where
// cpu-ns/op is this package's and pgconn's CPU without the database's or the socket's noise.
func BenchmarkQuery(b *testing.B) {
	db := benchDatabase(b)
	upstreams := []struct {
		name     string
		upstream func() edge.Upstream
	}{
		{"postgres", func() edge.Upstream { return edge.PoolUpstream(newPool(b, db, 4)) }},
		{"replayed", func() edge.Upstream { return newReplayUpstream(b, db) }},
	}
	for _, u := range upstreams {
		ts := newTestServer(b, db, func(o *Options) { o.Upstream = u.upstream() })
		mux := http.NewServeMux()
		ts.Register(mux)
		for _, c := range benchRequests(b) {
			b.Run(u.name+"/"+c.name, func(b *testing.B) {
				body := &benchBody{}
				req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "/query", body)
				if err != nil {
					b.Fatal(err)
				}
				setClientHeaders(req.Header)
				req.ContentLength = int64(len(c.body))
				req.Header.Set("Content-Length", strconv.Itoa(len(c.body)))
				w := &benchWriter{header: http.Header{}}
				b.ReportAllocs()
				cpu := processCPU(b)
				for b.Loop() {
					body.Reset(c.body)
					w.reset()
					mux.ServeHTTP(w, req)
					if w.status != http.StatusOK {
						b.Fatalf("%d %s", w.status, w.body.String())
					}
				}
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// processCPU is the CPU time this process has used (all threads, garbage collection
// included). PostgreSQL runs in processes of its own, so per request it is the pooler's CPU
// cost, which the wall time (mostly waiting for the database) hides.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchBody is a request body that can be read again.
type benchBody struct{ bytes.Reader }

func (b *benchBody) Close() error { return nil }

// benchWriter is a reusable ResponseWriter that keeps the last response.
type benchWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *benchWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) { w.status = status }

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

var _ io.ReadCloser = (*benchBody)(nil)
