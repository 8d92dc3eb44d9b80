package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/auth"
)

// Options configure a Server.
type Options struct {
	// Upstream lends connections from the pooler's shared pool. Required.
	Upstream Upstream
	// Keys checks API keys. Required; replace it on config reload with SetKeys.
	Keys KeyChecker
	// Database is the database name clients must ask for (empty: any).
	Database string
	// MaxRequestBytes caps a request body (413 beyond).
	MaxRequestBytes int
	// MaxResponseBytes caps a JSON response (507 beyond).
	MaxResponseBytes int
	// StatementTimeout bounds one request, including the wait for an upstream connection.
	StatementTimeout time.Duration
	// Limiter caps concurrent requests, in total and per key; beyond it requests get 429 at once
	// instead of piling up behind the pool's wait queue. Share it with the other handlers on
	// the listener. Nil: NewLimiter(MaxInFlight, 0).
	Limiter *Limiter
	// MaxInFlight caps concurrent POST /sql requests when Limiter is nil (0: no cap).
	MaxInFlight int
	// BodyTimeout bounds reading a request body (408 beyond; 0: no bound).
	BodyTimeout time.Duration
	// Guard logs refused keys and refuses sources over their failed-login budget (nil: neither).
	Guard *auth.Guard
	// CleartextAllowed reports whether a key may arrive over plain HTTP
	// (allowCleartextWithoutTLS); nil means never: requests without TLS are refused.
	CleartextAllowed func() bool
	// Cache, when not nil, enables the opt-in query cache.
	Cache *Cache
	// DefaultCacheTTL is max-age for a request that only sends stale-while-revalidate.
	DefaultCacheTTL time.Duration
	// WebSocket, when not nil, serves Postgres over WebSocket on every path but /sql.
	WebSocket ConnServer
	// Metrics, when not nil, receives request and session metrics.
	Metrics *Metrics
	// Logger logs failures (never keys or connection strings). Defaults to slog.Default().
	Logger *slog.Logger
}

// Server serves the HTTP SQL endpoint and the WebSocket transport.
type Server struct {
	opts    Options
	keys    atomic.Pointer[KeyChecker]
	log     *slog.Logger
	limiter *Limiter
}

// NewServer returns a Server; its Handler goes on the pooler's HTTP listener.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 4 << 20
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 10 << 20
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = 30 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, limiter: opts.Limiter}
	if s.limiter == nil {
		s.limiter = NewLimiter(opts.MaxInFlight, 0)
	}
	s.SetKeys(opts.Keys)
	return s
}

// SetKeys swaps the key checker (config reload); requests in flight keep the old one.
func (s *Server) SetKeys(k KeyChecker) { s.keys.Store(&k) }

// Handler routes /sql to the SQL endpoint and WebSocket upgrades on other paths (the Neon
// driver uses /v2) to the WebSocket transport.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sql", s.serveSQL)
	mux.HandleFunc("/", s.serveWebSocket)
	return mux
}

// errStatementTimeout is the cause of a request context that ran out of time.
var errStatementTimeout = errors.New("statement timeout")

func (s *Server) serveSQL(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := requestID(r)
	h := w.Header()
	h.Set(headerRequestID, reqID)
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", headerRequestID+", "+headerCacheStatus+", Age")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Cache-Control, "+headerConnectionString+", "+
			headerRawTextOutput+", "+headerArrayMode+", "+headerIsolationLevel+", "+headerReadOnly+", "+headerDeferrable+", "+headerRequestID)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	kind, code := "single", http.StatusInternalServerError // what a panic below would have cost
	defer func() { s.opts.Metrics.observeRequest(kind, code, time.Since(start)) }()
	// Until the body is read, any answer also closes the connection: net/http would otherwise
	// wait to drain the rest of the body, which a trickling client never finishes.
	h.Set("Connection", "close")
	release, ok := s.limiter.Enter()
	if !ok {
		h.Set("Retry-After", "1")
		code = writeMessage(w, http.StatusTooManyRequests, "too many concurrent requests", "53300")
		return
	}
	defer release()
	code = s.handleSQL(w, r, reqID, &kind)
}

// handleSQL answers one POST /sql and returns the status code it wrote.
func (s *Server) handleSQL(w http.ResponseWriter, r *http.Request, reqID string, kind *string) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		return writeMessage(w, http.StatusMethodNotAllowed, "use POST", "")
	}
	user, key, database, err := parseCredentials(r.Header)
	if err != nil {
		return writeMessage(w, http.StatusBadRequest, err.Error(), "08000")
	}
	if key == "" {
		return writeMessage(w, http.StatusUnauthorized,
			"authentication required: send the API key as the password in "+headerConnectionString+" or as \"Authorization: Bearer <key>\"", "28000")
	}
	keyName, status := s.authorize(w, r, user, key)
	if status != 0 {
		return status
	}
	releaseKey, ok := s.limiter.EnterKey(keyName)
	if !ok {
		w.Header().Set("Retry-After", "1")
		return writeMessage(w, http.StatusTooManyRequests, "too many concurrent requests for this API key", "53300")
	}
	defer releaseKey()
	if s.opts.Database != "" && database != "" && database != s.opts.Database {
		return writeMessage(w, http.StatusBadRequest, "database \""+database+"\" does not exist", "3D000")
	}

	body, err := ReadBody(w, r, s.opts.MaxRequestBytes, s.opts.BodyTimeout)
	if err == nil {
		w.Header().Del("Connection") // the body is in: keep-alive is fine again
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return writeMessage(w, http.StatusRequestEntityTooLarge,
				"request body too large (max "+strconv.Itoa(s.opts.MaxRequestBytes)+" bytes)", "54000")
		case errors.Is(err, ErrBodyTimeout):
			return writeMessage(w, http.StatusRequestTimeout,
				"request body not received within "+s.opts.BodyTimeout.String(), "08P01")
		}
		return writeMessage(w, http.StatusBadRequest, "could not read request body", "08P01")
	}
	queries, batch, err := parseBody(body)
	if batch {
		*kind = "batch"
	}
	if err != nil {
		return writeMessage(w, http.StatusBadRequest, err.Error(), "08P01")
	}
	mode := outputMode{rawText: flag(r.Header, headerRawTextOutput), arrayMode: flag(r.Header, headerArrayMode)}
	begin := ""
	if batch {
		if begin, err = beginStatement(r.Header); err != nil {
			return writeMessage(w, http.StatusBadRequest, err.Error(), "08P01")
		}
	}

	ctx, cancel := context.WithTimeoutCause(r.Context(), s.opts.StatementTimeout, errStatementTimeout)
	defer cancel()

	if policy, ok := parseCachePolicy(r.Header, s.opts.DefaultCacheTTL); ok && s.opts.Cache != nil {
		if !batch {
			return s.serveCached(ctx, w, reqID, keyName, queries[0], mode, policy)
		}
		w.Header().Set(headerCacheStatus, cacheBypass)
		s.opts.Metrics.cacheLookups.WithLabelValues(cacheBypass).Inc()
	}

	out, err := s.execute(ctx, queries, batch, begin, mode)
	if err != nil {
		return s.writeError(ctx, w, reqID, err)
	}
	return writeJSON(w, http.StatusOK, out)
}

// authorize checks the request's key (KeyGate) and answers a refusal. It returns the key name,
// or the status it answered.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, user, key string) (string, int) {
	gate := KeyGate{Keys: *s.keys.Load(), Guard: s.opts.Guard, CleartextAllowed: s.opts.CleartextAllowed}
	name, refusal, retry := gate.Check(r, user, key)
	switch refusal {
	case KeyOverPlainHTTP:
		return "", writeMessage(w, http.StatusForbidden, MsgKeyOverPlainHTTP, "28000")
	case KeySourceOverBudget:
		w.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)+1))
		return "", writeMessage(w, http.StatusTooManyRequests, "too many failed logins from this address", "08004")
	case KeyInvalid:
		return "", writeMessage(w, http.StatusUnauthorized, authFailedMessage(user), "28P01")
	}
	return name, 0
}

// execute borrows an upstream connection for the request's queries and returns their JSON.
func (s *Server) execute(ctx context.Context, queries []query, batch bool, begin string, mode outputMode) ([]byte, error) {
	return s.withConn(ctx, func(opCtx context.Context, pc *pgconn.PgConn) ([]byte, error) {
		dst := make([]byte, 0, 512)
		if batch {
			return runBatch(opCtx, pc, begin, queries, mode, dst, s.opts.MaxResponseBytes)
		}
		out, err := runQuery(opCtx, pc, queries[0], mode, dst, s.opts.MaxResponseBytes)
		// A lone BEGIN (or a failed statement inside one) must not leak a transaction to the
		// next borrower of this connection.
		rollback(opCtx, pc)
		return out, err
	})
}

// executeReadOnly is execute for cacheable requests: the query runs in a READ ONLY transaction.
func (s *Server) executeReadOnly(ctx context.Context, q query, mode outputMode) ([]byte, error) {
	return s.withConn(ctx, func(opCtx context.Context, pc *pgconn.PgConn) ([]byte, error) {
		return runReadOnly(opCtx, pc, q, mode, make([]byte, 0, 512), s.opts.MaxResponseBytes)
	})
}

// cancelGrace is how long a statement may take to stop after its cancel request before the
// connection is cut.
const cancelGrace = 3 * time.Second

// withConn borrows a connection and runs fn on it. When ctx ends first (statement timeout, or
// the client went away), the running statement is cancelled on the server with a
// CancelRequest, so it stops using a backend that the pool no longer counts; fn gets an
// operation context that only gives up cancelGrace later. A connection that was sent a cancel
// is closed rather than reused, because Postgres may deliver the cancel late, to the next
// borrower's statement.
func (s *Server) withConn(ctx context.Context, fn func(opCtx context.Context, pc *pgconn.PgConn) ([]byte, error)) ([]byte, error) {
	lease, err := s.opts.Upstream.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	pc := lease.PgConn()

	opCtx, stopOp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOp()
	cancelled := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(cancelled)
		cctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		_ = pc.CancelRequest(cctx)
		time.AfterFunc(cancelGrace, stopOp)
	})
	restore := limitMessages(pc, s.opts.MaxResponseBytes)
	out, err := fn(opCtx, pc)
	restore()
	if !stopWatch() { // the cancel fired (or is firing): do not reuse this connection
		<-cancelled
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = pc.Close(cctx)
		cancel()
	}
	return out, err
}

// serveCached answers a single query that opted into the cache.
func (s *Server) serveCached(ctx context.Context, w http.ResponseWriter, reqID, keyName string, q query, mode outputMode, p cachePolicy) int {
	c := s.opts.Cache
	key := cacheKey(keyName, mode, q)
	body, status, age := c.lookup(key, p)
	if status == cacheStale && c.startRefresh(key) {
		// The refresh outlives this request on purpose: it must not die with the response.
		go s.refresh(key, q, mode, p) //nolint:gosec // G118: detached by design
	}
	if body == nil {
		var err error
		body, err = s.executeReadOnly(ctx, q, mode)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			c.store(key, body, p)
		case errors.As(err, &pgErr) && pgErr.Code == "25006": // it writes: run it normally, uncached
			status = cacheBypass
			body, err = s.execute(ctx, []query{q}, false, "", mode)
		}
		if err != nil {
			w.Header().Set(headerCacheStatus, cacheBypass)
			s.opts.Metrics.cacheLookups.WithLabelValues(cacheBypass).Inc()
			return s.writeError(ctx, w, reqID, err)
		}
	}
	s.opts.Metrics.cacheLookups.WithLabelValues(status).Inc()
	w.Header().Set(headerCacheStatus, status)
	if status == cacheHit || status == cacheStale {
		w.Header().Set("Age", strconv.Itoa(int(age/time.Second)))
	}
	return writeJSON(w, http.StatusOK, body)
}

// refresh revalidates a stale entry in the background.
func (s *Server) refresh(key string, q query, mode outputMode, p cachePolicy) {
	defer s.opts.Cache.endRefresh(key)
	ctx, cancel := context.WithTimeoutCause(context.Background(), s.opts.StatementTimeout, errStatementTimeout)
	defer cancel()
	body, err := s.executeReadOnly(ctx, q, mode)
	if err != nil {
		s.log.Warn("cache refresh failed", "err", err)
		return
	}
	s.opts.Cache.store(key, body, p)
}

// writeError answers a failed request: Postgres errors (including the pool's 53300 wait
// timeout) with 400 and their fields, as the Neon driver expects.
func (s *Server) writeError(ctx context.Context, w http.ResponseWriter, reqID string, err error) int {
	var reqErr *requestError
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(context.Cause(ctx), errStatementTimeout):
		return writeMessage(w, http.StatusBadRequest, "canceling statement due to statement timeout", "57014")
	case errors.Is(err, errResponseTooLarge):
		return writeMessage(w, http.StatusInsufficientStorage,
			"response too large (max "+strconv.Itoa(s.opts.MaxResponseBytes)+" bytes)", "54000")
	case errors.As(err, &pgErr):
		return writeJSON(w, http.StatusBadRequest, appendPgError(nil, pgErr))
	case errors.As(err, &reqErr):
		return writeMessage(w, http.StatusBadRequest, reqErr.msg, "08P01")
	case ctx.Err() != nil: // the client went away; nobody reads the answer
		return 499
	default:
		s.log.Error("http sql request failed", "requestId", reqID, "err", err)
		return writeMessage(w, http.StatusInternalServerError, "internal error (request id "+reqID+")", "XX000")
	}
}

func writeJSON(w http.ResponseWriter, code int, body []byte) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body) //nolint:gosec,nolintlint // G705 (the taint analysis reports it only sometimes): a JSON body with an application/json type, not HTML
	return code
}

func writeMessage(w http.ResponseWriter, code int, msg, sqlstate string) int {
	b := append([]byte(`{"message":`), appendJSONString(nil, []byte(msg))...)
	if sqlstate != "" {
		b = append(b, `,"code":`...)
		b = appendJSONString(b, []byte(sqlstate))
	}
	return writeJSON(w, code, append(b, '}'))
}

// appendPgError writes a Postgres error with the field names of node-postgres's DatabaseError,
// which the Neon driver copies onto the error it throws.
func appendPgError(dst []byte, e *pgconn.PgError) []byte {
	dst = append(dst, `{"message":`...)
	dst = appendJSONString(dst, []byte(e.Message))
	field := func(name, value string) {
		if value != "" {
			dst = append(dst, `,"`+name+`":`...)
			dst = appendJSONString(dst, []byte(value))
		}
	}
	num := func(name string, v int32) {
		if v != 0 {
			field(name, strconv.Itoa(int(v)))
		}
	}
	field("code", e.Code)
	field("severity", e.Severity)
	field("detail", e.Detail)
	field("hint", e.Hint)
	num("position", e.Position)
	num("internalPosition", e.InternalPosition)
	field("internalQuery", e.InternalQuery)
	field("where", e.Where)
	field("schema", e.SchemaName)
	field("table", e.TableName)
	field("column", e.ColumnName)
	field("dataType", e.DataTypeName)
	field("constraint", e.ConstraintName)
	field("file", e.File)
	num("line", e.Line)
	field("routine", e.Routine)
	return append(dst, '}')
}

// requestID echoes a sane X-Request-Id from the client or makes a new one.
func requestID(r *http.Request) string {
	if id := r.Header.Get(headerRequestID); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			if c := id[i]; c <= 0x20 || c >= 0x7f {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func authFailedMessage(user string) string {
	if user == "" {
		return "authentication failed: invalid API key"
	}
	return "authentication failed: invalid API key for user \"" + user + "\""
}
