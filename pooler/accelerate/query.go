package accelerate

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// queryRequest is the body of POST /query and /transaction/{id}/query.
type queryRequest struct {
	operation string
	plan      node
	params    *record // name → value
	comment   string  // the SQL comment rendered from "comments"
	readOnly  bool    // the plan has no statement that writes (no execute, no transaction)
	// answerSize is the plan's last answer size (cachedPlan.answerSize), kept for the next.
	answerSize *atomic.Int64
}

// parseQueryRequest reads a query request; its plan comes from plans when that has it.
func parseQueryRequest(body []byte, plans *planCache) (*queryRequest, error) {
	v, planText, err := parseJSONDeferring(body, "plan", plans.startOf)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	r, ok := v.(*record)
	if !ok {
		return nil, badRequest("the request body must be a JSON object")
	}
	q := &queryRequest{}
	if q.operation, _ = r.value("operation").(string); q.operation == "" {
		return nil, badRequest(`"operation" must be a non-empty string`)
	}
	if m, ok := r.get("model"); ok {
		if s, isStr := m.(string); !isStr || s == "" {
			return nil, badRequest(`"model" must be a non-empty string`)
		}
	}
	if q.params, ok = r.value("params").(*record); !ok {
		return nil, badRequest(`"params" must be an object`)
	}
	if c, ok := r.get("comments"); ok {
		cr, isRec := c.(*record)
		if !isRec {
			return nil, badRequest(`"comments" must be an object of strings`)
		}
		tags := make(map[string]string, len(cr.fields))
		for _, f := range cr.fields {
			s, isStr := f.value.(string)
			if !isStr {
				return nil, badRequest(`"comments" must be an object of strings`)
			}
			tags[f.name] = s
		}
		q.comment = sqlComment(tags)
	}
	if len(planText) == 0 || planText[0] != '{' {
		return nil, badRequest(`"plan" must be an object`)
	}
	p, err := plans.decode(planText)
	if err != nil {
		return nil, err
	}
	q.plan, q.readOnly, q.answerSize = p.plan, p.readOnly, &p.answerSize
	return q, nil
}

// writes reports whether a plan may write: it runs an execute node or asks for a transaction.
func writes(n node) bool {
	switch n := n.(type) {
	case *executeNode, *transactionNode:
		return true
	case *queryNode:
		return false
	case *seqNode:
		return anyWrites(n.items)
	case *sumNode:
		return anyWrites(n.items)
	case *concatNode:
		return anyWrites(n.items)
	case *letNode:
		for _, b := range n.bindings {
			if writes(b.expr) {
				return true
			}
		}
		return writes(n.expr)
	case *uniqueNode:
		return writes(n.expr)
	case *requiredNode:
		return writes(n.expr)
	case *reverseNode:
		return writes(n.expr)
	case *joinNode:
		if writes(n.parent) {
			return true
		}
		for _, c := range n.children {
			if writes(c.child) {
				return true
			}
		}
		return false
	case *mapFieldNode:
		return writes(n.records)
	case *dataMapNode:
		return writes(n.expr)
	case *validateNode:
		return writes(n.expr)
	case *ifNode:
		return writes(n.value) || writes(n.then) || writes(n.els)
	case *diffNode:
		return writes(n.from) || writes(n.to)
	case *processNode:
		return writes(n.expr)
	case *initializeRecordNode:
		return writes(n.expr)
	case *mapRecordNode:
		return writes(n.expr)
	}
	return false
}

func anyWrites(nodes []node) bool {
	for _, n := range nodes {
		if writes(n) {
			return true
		}
	}
	return false
}

// sqlComment renders sqlcommenter tags: /*key='value',...*/ sorted by key, URL-encoded.
func sqlComment(tags map[string]string) string {
	if len(tags) == 0 {
		return ""
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return localeLess(keys[i], keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = encodeURIComponent(k) + "='" + strings.ReplaceAll(encodeURIComponent(tags[k]), "'", `\'`) + "'"
	}
	return "/*" + strings.Join(parts, ",") + "*/"
}

// localeLess orders like String.prototype.localeCompare for ASCII keys: case-insensitively,
// lower case first among equals.
func localeLess(a, b string) bool {
	la, lb := strings.ToLower(a), strings.ToLower(b)
	if la != lb {
		return la < lb
	}
	return a > b
}

// encodeURIComponent escapes all but A-Z a-z 0-9 - _ . ! ~ * ' ( ).
func encodeURIComponent(s string) string {
	e := url.QueryEscape(s)
	e = strings.ReplaceAll(e, "+", "%20")
	for _, keep := range []string{"!", "'", "(", ")", "*"} {
		e = strings.ReplaceAll(e, url.QueryEscape(keep), keep)
	}
	return e
}

// serveQuery runs a plan, in an interactive transaction when the path names one.
func (s *Server) serveQuery(ctx context.Context, req *request) error {
	body, err := s.readBody(req)
	if err != nil {
		return err
	}
	q, err := parseQueryRequest(body, s.plans)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.QueryTimeout, errQueryTimeout)
	defer cancel()
	// What the extension's withAccelerateInfo() reports for an answer not served from or
	// stored in the cache (serveCached overrides it).
	req.header["Accelerate-Cache-Status"] = []string{cacheNone}
	if id := req.r.PathValue("id"); id != "" {
		var data []byte
		err := s.txs.withTx(ctx, id, req.keyName, "query", func(opCtx context.Context, tx *itx, conn *dbConn) error {
			var err error
			data, err = s.runPlan(ctx, opCtx, conn, q, req.logs, true)
			return err
		})
		req.rawData = data
		return err
	}
	if policy, ok := parseCacheControl(headerValue(req.r.Header, "Cache-Control")); ok {
		return s.serveCached(ctx, req, q, body, policy)
	}
	req.rawData, err = s.runPooled(ctx, q, req.logs, false)
	return err
}

// runPooled runs a plan on a connection borrowed from the pool for the request. readOnly
// runs it in a READ ONLY transaction (for the cache: Postgres refuses a write there).
func (s *Server) runPooled(ctx context.Context, q *queryRequest, logs *logSink, readOnly bool) ([]byte, error) {
	lease, err := s.opts.Upstream.Acquire(ctx)
	if err != nil {
		if errors.Is(context.Cause(ctx), errQueryTimeout) {
			return nil, resourceLimit("P6004", "Query timeout exceeded")
		}
		if d := asDriverError(err); d != nil {
			return nil, userFacingDBError(d, false)
		}
		return nil, err
	}
	defer lease.Release()
	conn := &dbConn{pc: lease.PgConn()}
	var data []byte
	cancelled, err := guarded(ctx, conn.pc, func(opCtx context.Context) error {
		if !readOnly {
			var runErr error
			data, runErr = s.runPlan(ctx, opCtx, conn, q, logs, false)
			return runErr
		}
		if _, beginErr := conn.run(opCtx, "BEGIN READ ONLY"); beginErr != nil {
			return beginErr
		}
		var runErr error
		data, runErr = s.runPlan(ctx, opCtx, conn, q, logs, true)
		end := "COMMIT"
		if runErr != nil {
			end = "ROLLBACK"
		}
		if _, endErr := conn.run(opCtx, end); runErr == nil {
			runErr = endErr
		}
		return runErr
	})
	if cancelled {
		closeConn(conn.pc)
	} else {
		// A plan never leaves a transaction open, but a connection must not go back to the
		// pool inside one.
		endTransaction(conn.pc)
	}
	if err != nil && cancelled && errors.Is(context.Cause(ctx), errQueryTimeout) {
		return nil, resourceLimit("P6004", "Query timeout exceeded")
	}
	return data, err
}

// runPlan interprets a plan on conn and returns the encoded "data" value (nil when the
// plan's result is undefined). reqCtx is the request's context, opCtx the one statements run
// with.
func (s *Server) runPlan(reqCtx, opCtx context.Context, conn *dbConn, q *queryRequest, logs *logSink, inTx bool) ([]byte, error) {
	budget := int64(s.opts.MaxResponseBytes)
	conn.readBudget = &budget
	maxBind := s.opts.MaxBindValues
	if maxBind <= 0 {
		maxBind = defaultMaxBindValues
	}
	now := time.Now()
	in := &interpreter{conn: conn, reqCtx: reqCtx, inTx: inTx, gens: newGenerators(now), maxBind: maxBind,
		comment: q.comment, logs: logs}
	v, err := in.run(opCtx, q.plan, q.params)
	if err != nil {
		return nil, err
	}
	if v == any(undefined) {
		return nil, nil
	}
	data, err := appendJSON(make([]byte, 0, min(max(512, q.answerSize.Load()+64), 64<<10)), v)
	if err != nil {
		return nil, err
	}
	q.answerSize.Store(int64(len(data)))
	if len(data) > s.opts.MaxResponseBytes {
		return nil, errResponseTooLarge
	}
	return data, nil
}

// Cache statuses answered in accelerate-cache-status.
const (
	cacheTTL  = "ttl"  // served from the cache within max-age
	cacheSWR  = "swr"  // served stale within stale-while-revalidate; refreshed in the background
	cacheMiss = "miss" // run and stored
	cacheNone = "none" // not cached: no cache strategy, a write, an error, or no cache configured
)

// cachePolicy is a request's cache strategy.
type cachePolicy struct {
	maxAge, swr time.Duration
}

// maxCacheTTL bounds max-age and stale-while-revalidate.
const maxCacheTTL = 24 * time.Hour

// parseCacheControl reads the extension's "cache-control": "max-age=N" with an optional
// ",stale-while-revalidate=M" (seconds). ok is false for "no-cache"/"no-store", no header,
// or a strategy that caches nothing.
func parseCacheControl(h string) (p cachePolicy, ok bool) {
	if h == "" {
		return p, false
	}
	for _, d := range strings.Split(h, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
		seconds := func() time.Duration {
			n, err := time.ParseDuration(strings.Trim(value, `"`) + "s")
			if err != nil || n < 0 {
				return 0
			}
			return min(n.Truncate(time.Second), maxCacheTTL)
		}
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			return cachePolicy{}, false
		case "max-age", "s-maxage":
			p.maxAge = seconds()
		case "stale-while-revalidate":
			p.swr = seconds()
		}
	}
	return p, p.maxAge > 0 || p.swr > 0
}

// cacheableOperations are the model operations that only read.
var cacheableOperations = map[string]bool{
	"findUnique": true, "findUniqueOrThrow": true, "findFirst": true, "findFirstOrThrow": true,
	"findMany": true, "aggregate": true, "groupBy": true, "count": true,
}

// scopedTag is an invalidation tag within one API key name's entries.
func scopedTag(keyName, tag string) string { return "accelerate\x00" + keyName + "\x00" + tag }

// allEntriesTag is carried by every entry of a key name ("invalidate all").
func allEntriesTag(keyName string) string { return "accelerate\x00" + keyName + "\x01all" }

// serveCached answers a query that sent a cache strategy.
func (s *Server) serveCached(ctx context.Context, req *request, q *queryRequest, body []byte, p cachePolicy) error {
	c := s.opts.Cache
	if c == nil || !q.readOnly || !cacheableOperations[q.operation] {
		req.header.Set("Accelerate-Cache-Status", cacheNone)
		s.opts.Metrics.cacheLookups.WithLabelValues(cacheNone).Inc()
		var err error
		req.rawData, err = s.runPooled(ctx, q, req.logs, false)
		return err
	}
	sum := sha256.Sum256(append([]byte("accelerate\x00"+req.keyName+"\x00"), body...))
	key := string(sum[:])
	tags := []string{allEntriesTag(req.keyName)}
	for _, t := range strings.Split(req.r.Header.Get("Accelerate-Cache-Tags"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, scopedTag(req.keyName, t))
		}
	}
	data, fresh, age := c.Lookup(key, p.maxAge, p.swr)
	status := cacheMiss
	switch {
	case data != nil && fresh:
		status = cacheTTL
	case data != nil:
		status = cacheSWR
		if c.StartRefresh(key) && !s.closing.Load() {
			s.refresh.Add(1)
			// The refresh outlives this request on purpose: it must not die with the response.
			go s.refreshEntry(key, q, p, tags) //nolint:gosec // G118: detached by design
		}
	default:
		var err error
		data, err = s.runPooled(ctx, q, req.logs, true)
		var pgErr *pgconn.PgError
		if err != nil && errors.As(err, &pgErr) && pgErr.Code == "25006" {
			data, err = s.runPooled(ctx, q, req.logs, false) // it writes after all: run it uncached
			status = cacheNone
		} else if err == nil && data != nil {
			c.Store(key, data, p.maxAge, p.swr, tags)
		}
		if err != nil {
			status = cacheNone
		}
		req.header.Set("Accelerate-Cache-Status", status)
		s.opts.Metrics.cacheLookups.WithLabelValues(status).Inc()
		req.rawData = data
		return err
	}
	s.opts.Metrics.cacheLookups.WithLabelValues(status).Inc()
	req.header.Set("Accelerate-Cache-Status", status)
	req.header.Set("Age", strconv.Itoa(int(age/time.Second)))
	req.header.Set("Last-Modified", time.Now().Add(-age).UTC().Format(http.TimeFormat))
	req.rawData = data
	return nil
}

// refreshEntry revalidates a stale cache entry in the background.
func (s *Server) refreshEntry(key string, q *queryRequest, p cachePolicy, tags []string) {
	defer s.refresh.Done()
	defer func() {
		s.opts.Cache.EndRefresh(key)
		if s.afterRefresh != nil {
			s.afterRefresh()
		}
	}()
	ctx, cancel := context.WithTimeoutCause(context.Background(), s.opts.QueryTimeout, errQueryTimeout)
	defer cancel()
	data, err := s.runPooled(ctx, q, nil, true)
	if err != nil {
		s.log.Warn("accelerate cache refresh failed", "err", err)
		return
	}
	if data != nil {
		s.opts.Cache.Store(key, data, p.maxAge, p.swr, tags)
	}
}

// parseTxOptions reads the body of POST /transaction/start.
func parseTxOptions(body []byte) (txOptions, error) {
	var o txOptions
	v, err := parseJSON(body)
	if err != nil {
		return o, badRequest(err.Error())
	}
	r, ok := v.(*record)
	if !ok {
		return o, badRequest("the request body must be a JSON object")
	}
	for _, f := range r.fields {
		switch f.name {
		case "timeout", "maxWait":
			n, ok := f.value.(float64)
			if !ok || n < 0 {
				return o, badRequest(`"` + f.name + `" must be a non-negative number of milliseconds`)
			}
			if f.name == "timeout" {
				o.timeout = n
			} else {
				o.maxWait = n
			}
		case "isolationLevel":
			if o.isolationLevel, ok = f.value.(string); !ok {
				return o, badRequest(`"isolationLevel" must be a string`)
			}
		case "newTxId":
			if o.newTxID, ok = f.value.(string); !ok {
				return o, badRequest(`"newTxId" must be a string`)
			}
		}
	}
	return o, nil
}
