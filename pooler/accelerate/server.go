package accelerate

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/edge"
)

// Options configure a Server.
type Options struct {
	// Upstream lends connections from the pooler's shared pool. Required.
	Upstream edge.Upstream
	// Keys checks the API key of "Authorization: Bearer <key>" (edge.KeyringFunc follows
	// config reloads). Required.
	Keys edge.KeyChecker
	// Cache, when not nil, serves queries that send a cache strategy. SetCache replaces it
	// (config reloads).
	Cache ResultCache
	// MaxRequestBytes caps a request body (413 beyond).
	MaxRequestBytes int
	// MaxResponseBytes caps the rows a request reads and the response it writes (422 beyond).
	MaxResponseBytes int
	// QueryTimeout bounds one request's plan (422 P6004 beyond).
	QueryTimeout time.Duration
	// MaxTransactionTimeout caps the timeout an interactive transaction may ask for.
	MaxTransactionTimeout time.Duration
	// MaxBindValues, when positive, is advertised to clients in /connection-info and splits
	// statements; otherwise statements are split at Prisma's PostgreSQL default, 32766.
	MaxBindValues int
	// Limiter caps requests in flight, in total and per key; the pooler shares one with POST
	// /sql so a key's budget covers both protocols (nil: no cap).
	Limiter *edge.Limiter
	// BodyTimeout bounds reading a request body (408 beyond; 0: no bound). SetBodyTimeout
	// replaces it (config reloads).
	BodyTimeout time.Duration
	// Guard logs refused keys and refuses sources over their failed-login budget (nil: neither).
	Guard *auth.Guard
	// CleartextAllowed reports whether a key may arrive over plain HTTP; nil means never.
	CleartextAllowed func() bool
	// Metrics, when not nil, receives request metrics.
	Metrics *Metrics
	// Logger logs failures (never keys). Defaults to slog.Default().
	Logger *slog.Logger
}

// ResultCache is the pooler's query cache as this package uses it; *edge.Cache implements
// it, so both HTTP protocols share one cache and one byte budget.
type ResultCache interface {
	Lookup(key string, maxAge, staleWhileRevalidate time.Duration) (body []byte, fresh bool, age time.Duration)
	Store(key string, body []byte, maxAge, staleWhileRevalidate time.Duration, tags []string)
	StartRefresh(key string) bool
	EndRefresh(key string)
	Invalidate(tags []string) int
}

// defaultMaxBindValues is the bind-parameter limit Prisma's compiler assumes for PostgreSQL.
const defaultMaxBindValues = 32766

// Server serves the Prisma Accelerate protocol.
type Server struct {
	opts     Options
	log      *slog.Logger
	txs      *txManager
	plans    *planCache
	cache    atomic.Pointer[cacheRef] // the query cache in force (SetCache)
	bodyWait atomic.Int64             // the body timeout in force (SetBodyTimeout), nanoseconds
	refresh  sync.WaitGroup           // background cache refreshes
	closing  atomic.Bool
	closeOne sync.Once
	// afterRefresh, when set, is called when a background cache refresh ends (tests).
	afterRefresh func()
}

// NewServer returns a Server; Register mounts it on the pooler's HTTP mux.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 32 << 20
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 10 << 20
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 30 * time.Second
	}
	if opts.MaxTransactionTimeout <= 0 {
		opts.MaxTransactionTimeout = 15 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, plans: newPlanCache()}
	s.SetCache(opts.Cache)
	s.SetBodyTimeout(opts.BodyTimeout)
	s.txs = newTxManager(opts.Upstream, opts.MaxTransactionTimeout, opts.Metrics)
	return s
}

// cacheRef holds the cache in force; c is nil when there is none.
type cacheRef struct{ c ResultCache }

// SetCache puts c in force for the requests that start from now on (nil: no cache). A request
// or background refresh in flight finishes with the cache it started with.
func (s *Server) SetCache(c ResultCache) { s.cache.Store(&cacheRef{c: c}) }

// SetBodyTimeout puts the bound on reading a request body in force for requests that start
// from now on (0: no bound).
func (s *Server) SetBodyTimeout(d time.Duration) { s.bodyWait.Store(int64(d)) }

// currentCache is the cache in force, nil when there is none.
func (s *Server) currentCache() ResultCache { return s.cache.Load().c }

// Register mounts the endpoints on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/connection-info", s.endpoint("connection-info", http.MethodGet, s.serveConnectionInfo))
	mux.HandleFunc("/query", s.endpoint("query", http.MethodPost, s.serveQuery))
	mux.HandleFunc("/transaction/start", s.endpoint("transaction-start", http.MethodPost, s.serveStart))
	mux.HandleFunc("/transaction/{id}/query", s.endpoint("transaction-query", http.MethodPost, s.serveQuery))
	mux.HandleFunc("/transaction/{id}/commit", s.endpoint("transaction-commit", http.MethodPost, s.serveEnd))
	mux.HandleFunc("/transaction/{id}/rollback", s.endpoint("transaction-rollback", http.MethodPost, s.serveEnd))
	mux.HandleFunc("/invalidate", s.endpoint("invalidate", http.MethodPost, s.serveInvalidate))
}

// Close rolls back the open interactive transactions and returns their connections, and
// refuses new ones. The pooler calls it when it drains, after the HTTP listener stopped.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		s.closing.Store(true)
		s.txs.close()
		s.refresh.Wait()
	})
}

// request is what a handler works with.
type request struct {
	r        *http.Request
	w        http.ResponseWriter
	bodyRead bool // the whole body was read (else the answer closes the connection)
	keyName  string
	logs     *logSink
	// The response.
	header  http.Header
	body    *record
	rawData []byte // a cached "data" value, written as is
}

type handlerFunc func(ctx context.Context, req *request) error

// endpoint wraps a handler with the method check, authentication, metrics and the error
// answer.
func (s *Server) endpoint(name, method string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		tel, hasTel := r.Header["X-Capture-Telemetry"]
		req := &request{r: r, w: w, logs: newLogSink(strings.Join(tel, ","), hasTel), header: w.Header()}
		var err error
		if release, ok := s.opts.Limiter.Enter(); ok {
			err = s.handle(r.Context(), req, method, h)
			release()
		} else {
			err = tooManyRequests("too many concurrent requests")
		}
		if !req.bodyRead && r.ContentLength != 0 {
			// net/http would wait to drain an unread body, which a trickling client never finishes.
			req.header.Set("Connection", "close")
		}
		code := s.write(w, req, err)
		s.opts.Metrics.observe(name, code, time.Since(start))
	}
}

func (s *Server) handle(ctx context.Context, req *request, method string, h handlerFunc) (err error) {
	if req.r.Method != method {
		req.header.Set("Allow", method)
		return &apiError{status: http.StatusMethodNotAllowed, code: "P6005", message: "use " + method}
	}
	key, ok := bearerToken(headerValue(req.r.Header, "Authorization"))
	if !ok {
		return &apiError{status: http.StatusUnauthorized, code: "P6002", message: "authentication required: send the API key as \"Authorization: Bearer <key>\""}
	}
	name, err := s.authorize(req.r, key)
	if err != nil {
		return err
	}
	req.keyName = name
	release, ok := s.opts.Limiter.EnterKey(name)
	if !ok {
		return tooManyRequests("too many concurrent requests for this API key")
	}
	defer release()
	return h(ctx, req)
}

// authorize checks a bearer key as POST /sql does (edge.KeyGate) and turns a refusal into
// Accelerate's error.
func (s *Server) authorize(r *http.Request, key string) (string, error) {
	gate := edge.KeyGate{Keys: s.opts.Keys, Guard: s.opts.Guard, CleartextAllowed: s.opts.CleartextAllowed}
	name, refusal, retry := gate.Check(r, "", key)
	switch refusal {
	case edge.KeyOverPlainHTTP:
		return "", &apiError{status: http.StatusForbidden, code: "P6002", message: edge.MsgKeyOverPlainHTTP}
	case edge.KeySourceOverBudget:
		e := tooManyRequests("too many failed logins from this address")
		e.retryAfter = int(retry/time.Second) + 1
		return "", e
	case edge.KeyInvalid:
		return "", &apiError{status: http.StatusUnauthorized, code: "P6002", message: "authentication failed: invalid API key"}
	}
	return name, nil
}

// tooManyRequests is Accelerate's 429 (P5011), with Retry-After.
func tooManyRequests(msg string) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "P5011", message: msg, retryAfter: 1}
}

// headerValue is h.Get(key) for a key already in canonical form (net/http canonicalises the
// keys of a request), without canonicalising it again on every request.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func bearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// readBody reads the request body within the size cap and the body timeout.
func (s *Server) readBody(req *request) ([]byte, error) {
	timeout := time.Duration(s.bodyWait.Load())
	body, err := edge.ReadBody(req.w, req.r, s.opts.MaxRequestBytes, timeout)
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		req.bodyRead = true
		return body, nil
	case errors.As(err, &mbe):
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "P6005",
			message: "request body too large (max " + strconv.Itoa(s.opts.MaxRequestBytes) + " bytes)"}
	case errors.Is(err, edge.ErrBodyTimeout):
		return nil, &apiError{status: http.StatusRequestTimeout, code: "P6005",
			message: "request body not received within " + timeout.String()}
	}
	return nil, badRequest("could not read the request body")
}

func (s *Server) serveConnectionInfo(_ context.Context, req *request) error {
	info := recordOf("supportsRelationJoins", true)
	if s.opts.MaxBindValues > 0 {
		info.set("maxBindValues", float64(s.opts.MaxBindValues))
	}
	req.body = recordOf("provider", "postgres", "connectionInfo", info)
	return nil
}

func (s *Server) serveStart(ctx context.Context, req *request) error {
	body, err := s.readBody(req)
	if err != nil {
		return err
	}
	opts, err := parseTxOptions(body)
	if err != nil {
		return err
	}
	if s.closing.Load() {
		return txAPIError("the server is shutting down and starts no new transactions", nil)
	}
	id, err := s.txs.start(ctx, req.keyName, opts)
	if err != nil {
		return err
	}
	req.header.Set("Prisma-Transaction-Id", id)
	req.body = recordOf("id", id)
	return nil
}

// serveEnd commits or rolls back; the client needs a JSON body even here.
func (s *Server) serveEnd(ctx context.Context, req *request) error {
	if _, err := s.readBody(req); err != nil { // its content does not matter; a trickle must not hold the connection
		return err
	}
	commit := strings.HasSuffix(req.r.URL.Path, "/commit")
	if err := s.txs.end(ctx, req.r.PathValue("id"), req.keyName, commit, req.logs); err != nil {
		return err
	}
	req.body = newRecord(0)
	return nil
}

func (s *Server) serveInvalidate(_ context.Context, req *request) error {
	body, err := s.readBody(req)
	if err != nil {
		return err
	}
	v, err := parseJSON(body)
	if err != nil {
		return badRequest(err.Error())
	}
	r, ok := v.(*record)
	if !ok {
		return badRequest(`expected {"tags": [...]} or {"tags": "all"}`)
	}
	var tags []string
	switch t := r.value("tags").(type) {
	case string:
		if t != "all" {
			return badRequest(`"tags" must be an array of strings or "all"`)
		}
		tags = []string{allEntriesTag(req.keyName)}
	case []any:
		for _, e := range t {
			tag, ok := e.(string)
			if !ok {
				return badRequest(`"tags" must be an array of strings or "all"`)
			}
			tags = append(tags, scopedTag(req.keyName, tag))
		}
	default:
		return badRequest(`expected {"tags": [...]} or {"tags": "all"}`)
	}
	n := 0
	if c := s.currentCache(); c != nil {
		n = c.Invalidate(tags)
	}
	req.body = recordOf("invalidated", float64(n))
	return nil
}

// write answers the request: its body or its error, with the collected logs.
func (s *Server) write(w http.ResponseWriter, req *request, err error) int {
	if err != nil {
		return s.writeError(w, req, err)
	}
	var out []byte
	if req.body != nil {
		if ext := req.logs.extensions(); ext != nil {
			req.body.set("extensions", ext)
		}
		var encErr error
		if out, encErr = appendJSON(make([]byte, 0, 256), req.body); encErr != nil {
			return s.writeError(w, req, encErr)
		}
	} else { // a query result: {"data": ..., "extensions": ...}
		out = append(make([]byte, 0, len(req.rawData)+64), '{')
		if req.rawData != nil {
			out = append(out, `"data":`...)
			out = append(out, req.rawData...)
		}
		if req.logs != nil {
			if req.rawData != nil {
				out = append(out, ',')
			}
			out = append(out, `"extensions":`...)
			var encErr error
			if out, encErr = req.logs.appendExtensions(out); encErr != nil {
				return s.writeError(w, req, encErr)
			}
		}
		out = append(out, '}')
	}
	return writeBody(w, http.StatusOK, out)
}

func writeBody(w http.ResponseWriter, status int, body []byte) int {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// writeError answers a failed request as the reference does: a status, and {code, error,
// meta} for Prisma's errors or {error} for internal ones.
func (s *Server) writeError(w http.ResponseWriter, req *request, err error) int {
	requestID := uuid.NewString() // names the failure in the log and in the client's error log
	var api *apiError
	var unsupported *unsupportedError
	var malformed *malformedError
	switch {
	case errors.As(err, &api):
	case errors.As(err, &unsupported):
		version := req.r.Header.Get("Prisma-Engine-Hash")
		if version == "" {
			version = "unknown"
		}
		api = &apiError{status: http.StatusBadRequest, code: "P6006",
			message: "This query uses " + unsupported.what + ", which this edgepool server does not support " +
				"(Prisma client " + version + "; edgepool implements the query plans of Prisma 7.x up to 7.10). " +
				"The query was not run.",
			meta: recordOf("unsupported", unsupported.what, "path", unsupported.path, "clientVersion", version)}
	case errors.As(err, &malformed):
		api = badRequest(malformed.Error())
	case errors.Is(err, context.Canceled) && req.r.Context().Err() != nil:
		return 499 // the client went away; nobody reads the answer
	default:
		var plan *planError
		if !errors.As(err, &plan) {
			s.log.Error("accelerate request failed", "path", req.r.URL.Path, "requestId", requestID, "err", err)
		}
		api = &apiError{status: http.StatusInternalServerError, message: err.Error()}
	}
	req.logs.failure(api, req.r.Method, req.r.URL.Path, requestID)
	if api.retryAfter > 0 {
		req.header.Set("Retry-After", strconv.Itoa(api.retryAfter))
	}
	body := newRecord(4)
	if api.code != "" {
		body.set("code", api.code)
	}
	body.set("error", api.message)
	if api.meta != nil {
		body.set("meta", api.meta)
	}
	if ext := req.logs.extensions(); ext != nil {
		body.set("extensions", ext)
	}
	out, encErr := appendJSON(nil, body)
	if encErr != nil {
		out = []byte(`{"error":"internal error"}`)
	}
	return writeBody(w, api.status, out)
}
