package accelerate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The golden tests replay real exchanges between the Prisma 7.10 client and Prisma's
// reference server (testdata/README.md) against this package's server, in file order, on a
// fresh database built from testdata/schema.sql, and compare status, headers and body: the
// 75 captures of the suite, then the 3 of the relationJoins preview (JSON-aggregated
// relations), which were captured on the database the suite left.
//
// The comparison is exact except for values made at run time, which differ between runs:
//
//   - ids made by generators: UUIDs (same version), cuids (their time part must fall within
//     this run), and the transaction ids;
//   - timestamps made by now(): ISO strings of @default(now())/@updatedAt and the database's
//     now(), which must fall within this run;
//   - the elapsed time of an expired transaction (meta.timeTaken, and the number in its
//     message), which must be at least the transaction's timeout;
//   - log entries' timestamps and durations, and the text of an error log's "error" attribute
//     and request id (a JavaScript stack trace in the captures).
//
// A run-time value must be used consistently: the value a capture shows in one place maps to
// one value of this run everywhere else (a cuid returned by a create and sent back in a later
// update, a transaction id in the path), and two different ids never map to the same one.
//
// One deliberate difference: the reference has no /invalidate route and answers 404; this
// server implements it (the extension's $accelerate.invalidate), so those two exchanges
// expect 200.

type capture struct {
	Label     string     `json:"label"`
	Exchanges []exchange `json:"exchanges"`
}

type exchange struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers"`
	Body     any               `json:"body"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    any               `json:"body"`
	} `json:"response"`
}

// replayedHeaders are the request headers the client sends that matter to a server.
var replayedHeaders = []string{"authorization", "content-type", "accept", "prisma-engine-hash", "prisma-engine-version",
	"x-capture-telemetry", "cache-control", "accelerate-cache-tags"}

func TestGoldenReference(t *testing.T) {
	schema, err := os.ReadFile("testdata/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/reference/*.json")
	if err != nil || len(files) != 75 {
		t.Fatalf("want the 75 captures in testdata/reference, found %d (%v)", len(files), err)
	}
	sort.Strings(files)
	// The relationJoins captures were made right after the suite, on the same database.
	joins, err := filepath.Glob("testdata/relation-joins/*.json")
	if err != nil || len(joins) != 3 {
		t.Fatalf("want the 3 captures in testdata/relation-joins, found %d (%v)", len(joins), err)
	}
	sort.Strings(joins)
	ts := newTestServer(t, newDatabase(t, string(schema)), nil)
	r := newReplayer(ts)
	for _, f := range append(files, joins...) {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) { r.replayFile(t, f) })
	}
}

type replayer struct {
	ts        *testServer
	since     time.Time
	generated map[string]string // capture value → this run's value
	taken     map[string]string // this run's id → capture value (ids are one-to-one)
	timedOut  chan string       // ids of transactions the server expired
	expired   map[string]bool   // ... of which the test has heard
}

func newReplayer(ts *testServer) *replayer {
	r := &replayer{ts: ts, since: time.Now(), generated: map[string]string{}, taken: map[string]string{},
		timedOut: make(chan string, 16), expired: map[string]bool{}}
	ts.txs.onFinish = func(id string, status txStatus) {
		if status == txTimedOut {
			r.timedOut <- id
		}
	}
	return r
}

func (r *replayer) replayFile(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c capture
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	for i, ex := range c.Exchanges {
		r.replayExchange(t, fmt.Sprintf("exchange %d (%s %s)", i, ex.Method, ex.Path), ex)
	}
}

func (r *replayer) replayExchange(t *testing.T, what string, ex exchange) {
	path := r.mapPath(ex.Path)
	var body string
	if ex.Body != nil {
		b, err := json.Marshal(r.mapRequest(ex.Body))
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
	}
	var headers []string
	for _, h := range replayedHeaders {
		if v, ok := ex.Headers[h]; ok {
			headers = append(headers, h+": "+v)
		}
	}
	want := ex.Response
	if isExpiredAnswer(want.Status, want.Body) && strings.HasPrefix(path, "/transaction/") {
		// The client slept past the transaction's timeout; wait until the server expired it.
		id := strings.Split(path, "/")[2]
		r.awaitTimeout(t, id)
	}
	status, header, got := r.ts.do(t, ex.Method, path, body, headers...)
	if ex.Path == "/invalidate" { // see the file comment
		if status != 200 || !strings.Contains(got, `"invalidated":`) {
			t.Errorf("%s: want 200 {\"invalidated\": n}, got %d %s", what, status, got)
		}
		return
	}
	if status != want.Status {
		t.Errorf("%s: status %d, want %d\n got: %s\nwant: %s", what, status, want.Status, got, mustJSON(want.Body))
		return
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	for name, v := range want.Headers {
		if name == "content-type" {
			continue
		}
		var diffs []string
		r.compare("header "+name, v, header.Get(name), &diffs)
		for _, d := range diffs {
			t.Errorf("%s: %s", what, d)
		}
	}
	var gotBody any
	dec := json.NewDecoder(strings.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&gotBody); err != nil {
		t.Errorf("%s: body is not JSON: %v: %s", what, err, got)
		return
	}
	var diffs []string
	r.compare("body", want.Body, gotBody, &diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d differences:\n  %s\n got: %s\nwant: %s", what, len(diffs), strings.Join(diffs, "\n  "), got, mustJSON(want.Body))
	}
}

func (r *replayer) awaitTimeout(t *testing.T, id string) {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for !r.expired[id] {
		select {
		case got := <-r.timedOut:
			r.expired[got] = true
		case <-timer.C:
			t.Fatalf("transaction %s did not time out", id)
		}
	}
}

func isExpiredAnswer(status int, body any) bool {
	m, ok := body.(map[string]any)
	if !ok || status != 409 {
		return false
	}
	msg, _ := m["error"].(string)
	return strings.Contains(msg, "expired transaction")
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// mapPath replaces run-time ids in a request path.
func (r *replayer) mapPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if v, ok := r.generated[s]; ok {
			parts[i] = v
		}
	}
	return strings.Join(parts, "/")
}

// mapRequest replaces run-time values the client sends back (an id from an earlier answer).
func (r *replayer) mapRequest(v any) any {
	switch x := v.(type) {
	case string:
		if m, ok := r.generated[x]; ok {
			return m
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.mapRequest(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = r.mapRequest(e)
		}
		return out
	}
	return v
}

var (
	uuidRe        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-([0-9a-f])[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	cuidRe        = regexp.MustCompile(`^c[0-9a-z]{24}$`)
	isoMillisRe   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)
	pgTimestampRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$`)
	elapsedRe     = regexp.MustCompile(`however \d+ ms passed`)
)

// matchGenerated decides whether got may stand for the capture's want: both are run-time
// values of the same kind, got was made during this run, and the mapping stays consistent.
func (r *replayer) matchGenerated(want, got string) bool {
	if prev, ok := r.generated[want]; ok {
		return prev == got
	}
	oneToOne := true
	switch {
	case uuidRe.MatchString(want):
		w, g := uuidRe.FindStringSubmatch(want), uuidRe.FindStringSubmatch(got)
		if len(g) < 2 || w[1] != g[1] {
			return false
		}
	case cuidRe.MatchString(want):
		if !cuidRe.MatchString(got) {
			return false
		}
		ms, err := strconv.ParseInt(got[1:9], 36, 64)
		if err != nil || !r.duringRun(time.UnixMilli(ms)) {
			return false
		}
	case isoMillisRe.MatchString(want):
		d, err := time.Parse(time.RFC3339Nano, got)
		if !isoMillisRe.MatchString(got) || err != nil || !r.duringRun(d) {
			return false
		}
		oneToOne = false // two requests of this run may share a millisecond
	case pgTimestampRe.MatchString(want):
		d, err := time.Parse("2006-01-02T15:04:05.999999-07:00", got)
		if !pgTimestampRe.MatchString(got) || err != nil || !r.duringRun(d) {
			return false
		}
		oneToOne = false
	default:
		return false
	}
	if oneToOne {
		if _, used := r.taken[got]; used {
			return false
		}
		r.taken[got] = want
	}
	r.generated[want] = got
	return true
}

func (r *replayer) duringRun(t time.Time) bool {
	return !t.Before(r.since.Add(-time.Second)) && !t.After(time.Now().Add(time.Second))
}

// compare appends the differences between the capture's value and this run's.
func (r *replayer) compare(path string, want, got any, diffs *[]string) {
	fail := func(format string, args ...any) { *diffs = append(*diffs, path+": "+fmt.Sprintf(format, args...)) }
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			fail("want an object, got %s", mustJSON(got))
			return
		}
		if strings.HasSuffix(path, ".extensions") {
			r.compareLogs(path, w["logs"], g["logs"], diffs)
			return
		}
		for k := range w {
			if _, ok := g[k]; !ok {
				fail("missing field %q", k)
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				fail("unexpected field %q = %s", k, mustJSON(g[k]))
			}
		}
		for k, wv := range w {
			if gv, ok := g[k]; ok {
				r.compare(path+"."+k, wv, gv, diffs)
			}
		}
		if strings.Contains(mustJSON(w["error"]), "expired transaction") {
			r.compareElapsed(path, w, g, diffs)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			fail("want %s, got %s", mustJSON(want), mustJSON(got))
			return
		}
		for i := range w {
			r.compare(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], diffs)
		}
	case string:
		g, ok := got.(string)
		switch {
		case !ok:
			fail("want %q, got %s", w, mustJSON(got))
		case g == w:
		case elapsedRe.MatchString(w) && elapsedRe.ReplaceAllString(w, "") == elapsedRe.ReplaceAllString(g, ""):
		case !r.matchGenerated(w, g):
			fail("want %q, got %q", w, g)
		}
	case json.Number:
		g, ok := got.(json.Number)
		if !ok || !numbersEqual(w, g) {
			if !strings.HasSuffix(path, ".meta.timeTaken") { // checked by compareElapsed
				fail("want %s, got %s", w, mustJSON(got))
			}
		}
	default:
		if mustJSON(want) != mustJSON(got) {
			fail("want %s, got %s", mustJSON(want), mustJSON(got))
		}
	}
}

func numbersEqual(a, b json.Number) bool {
	x, err1 := a.Float64()
	y, err2 := b.Float64()
	return err1 == nil && err2 == nil && x == y
}

// compareElapsed checks an expired transaction's elapsed time against its timeout.
func (r *replayer) compareElapsed(path string, want, got map[string]any, diffs *[]string) {
	meta, _ := got["meta"].(map[string]any)
	timeout, _ := meta["timeout"].(json.Number)
	taken, _ := meta["timeTaken"].(json.Number)
	tf, err1 := timeout.Float64()
	tt, err2 := taken.Float64()
	if err1 != nil || err2 != nil || tt < tf {
		*diffs = append(*diffs, fmt.Sprintf("%s.meta: timeTaken %s must be at least the timeout %s", path, taken, timeout))
	}
	if msg, _ := got["error"].(string); !strings.Contains(msg, "however "+taken.String()+" ms passed") {
		*diffs = append(*diffs, fmt.Sprintf("%s.error: %q does not state timeTaken %s", path, msg, taken))
	}
}

// compareLogs compares log entries: level, message and span always; a query's SQL and
// parameters; an error's method and path. Times, durations and error texts are run-specific.
func (r *replayer) compareLogs(path string, want, got any, diffs *[]string) {
	w, _ := want.([]any)
	g, ok := got.([]any)
	if !ok || len(g) != len(w) {
		*diffs = append(*diffs, fmt.Sprintf("%s.logs: want %d entries, got %s", path, len(w), mustJSON(got)))
		return
	}
	for i := range w {
		we, _ := w[i].(map[string]any)
		ge, _ := g[i].(map[string]any)
		p := fmt.Sprintf("%s.logs[%d]", path, i)
		for _, k := range []string{"level", "message", "spanId"} {
			r.compare(p+"."+k, we[k], ge[k], diffs)
		}
		wa, _ := we["attributes"].(map[string]any)
		ga, _ := ge["attributes"].(map[string]any)
		if we["level"] == "error" {
			r.compare(p+".attributes.method", wa["method"], ga["method"], diffs)
			if want, _ := wa["pathname"].(string); r.mapPath(want) != ga["pathname"] {
				*diffs = append(*diffs, fmt.Sprintf("%s.attributes.pathname: want %q, got %s", p, r.mapPath(want), mustJSON(ga["pathname"])))
			}
		} else {
			r.compare(p+".attributes.query", wa["query"], ga["query"], diffs)
			r.compare(p+".attributes.params", wa["params"], ga["params"], diffs)
		}
		if ts, ok := ge["timestamp"].([]any); !ok || len(ts) != 2 {
			*diffs = append(*diffs, p+".timestamp: want [seconds, nanoseconds]")
		}
	}
}
