// Package session runs Postgres wire-protocol client sessions on any net.Conn: startup, TLS
// negotiation, API-key authentication and transaction/session pooling over a shared
// pool.Pool. Transports (TCP listener, WebSocket) only accept connections and call
// Proxy.ServeConn; they know nothing about the protocol.
package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/pool"
)

// Runtime is the live-reloadable policy of a Proxy. Replace it as a whole with SetRuntime.
type Runtime struct {
	Keyring  *auth.Keyring
	Database string
	// SessionMode holds an upstream connection for the whole client session instead of one
	// transaction.
	SessionMode bool
	// PreferCleartext asks wire clients for the key as a cleartext password when the
	// connection is secured (TLS or Options.Secure); otherwise SCRAM is used.
	PreferCleartext bool
	// AllowCleartextWithoutTLS permits cleartext on unsecured connections (development only).
	AllowCleartextWithoutTLS bool
	// TLS answers SSLRequest when set.
	TLS *tls.Config
	// Guard logs failed logins and keeps the per-source failure budget (nil: neither). The
	// same Guard serves every runtime of a process.
	Guard *auth.Guard
	// MaxClients caps client connections, logged in or logging in (admission.go).
	MaxClients int
	// MaxAuthenticating caps connections logging in; one that may be pushed out (silent, or
	// stalled) makes room for a new one, else the new one waits for a place (admission.go).
	MaxAuthenticating      int
	AuthTimeout            time.Duration
	IdleTransactionTimeout time.Duration
	MaxMessageBytes        int
	PreparedPerConn        int
	// ClientStallTimeout cuts a client that holds an upstream connection with a request left
	// unfinished (extended-protocol messages without Sync, a message or COPY data stopped half
	// way) or that does not read what the server sends, for this long (0: never).
	ClientStallTimeout time.Duration
	// PreparedStatementBytes is the byte budget of the shared prepared-statement registry
	// (0: DefaultPreparedStatementBytes).
	PreparedStatementBytes int64
	// RelayLoop runs busy plain-TCP sessions in transaction mode on one event loop instead of a
	// goroutine each (evloop_linux.go).
	RelayLoop bool
}

// DefaultPreparedStatementBytes is the registry budget when the runtime sets none.
const DefaultPreparedStatementBytes = 16 << 20

func (rt *Runtime) statementBudget() int64 {
	if rt.PreparedStatementBytes > 0 {
		return rt.PreparedStatementBytes
	}
	return DefaultPreparedStatementBytes
}

// Options describe the transport a connection arrived on.
type Options struct {
	// Secure says the transport is already encrypted outside the protocol (WebSocket behind
	// TLS): SSLRequest is answered 'N' and cleartext passwords are acceptable.
	Secure bool
	// Cleartext asks the client for a cleartext password instead of SCRAM (the Neon serverless
	// driver over WebSocket sends its password this way). Honoured only when the connection is
	// secured or the runtime allows cleartext without TLS.
	Cleartext bool
	// Transport names the transport in logs and metrics ("tcp" when empty, "websocket").
	Transport string
}

// Observer receives session events for metrics. All methods must be cheap and safe for
// concurrent use.
type Observer interface {
	Transaction(d time.Duration)
	ServerError(sqlstate string)
	Bytes(in, out int64)
}

type nopObserver struct{}

func (nopObserver) Transaction(time.Duration) {}
func (nopObserver) ServerError(string)        {}
func (nopObserver) Bytes(int64, int64)        {}

// Proxy is shared by all client sessions of a process.
type Proxy struct {
	Pool     *pool.Pool
	Log      *slog.Logger
	Observer Observer

	runtime  atomic.Pointer[Runtime]
	stmts    *stmtRegistry
	draining atomic.Bool

	params     atomic.Pointer[[]serverParam]
	defaults   atomic.Pointer[map[string]string]
	defaultPS  atomic.Pointer[paramSet]
	paramsOnce sync.Mutex

	mu        sync.Mutex
	sessions  map[uint32]*session // by pooler-issued process ID (cancel key)
	janitorOn bool                // janitor.go; guarded by mu

	admissions admissions   // connections logging in (admission.go)
	clients    atomic.Int64 // logged in (or telling the client so): MaxClients' places taken
	inState    [numStates]atomic.Int64
	accepted   atomic.Int64
	replays    atomic.Int64 // requests moved to a fresh connection (the first was found dead)
	// The relay loop (evloop_linux.go): sessions it took in, and times it gave one to a goroutine.
	loopEntries  atomic.Int64
	loopHandoffs atomic.Int64

	// clock is the janitor's coarse clock: milliseconds since epoch, updated every tick.
	clock atomic.Int64
	epoch time.Time
}

type serverParam struct{ name, value string }

// NewProxy creates a proxy over p with an initial runtime.
func NewProxy(p *pool.Pool, rt *Runtime, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.Default()
	}
	px := &Proxy{Pool: p, Log: log, Observer: nopObserver{}, stmts: newStmtRegistry(rt.statementBudget()),
		sessions: map[uint32]*session{}, epoch: time.Now()}
	px.runtime.Store(rt)
	return px
}

// SetRuntime swaps the policy; open sessions keep running, new ones use rt. The statement
// registry's budget applies at once.
func (p *Proxy) SetRuntime(rt *Runtime) {
	p.runtime.Store(rt)
	p.stmts.setBudget(rt.statementBudget())
}

// Runtime returns the current policy.
func (p *Proxy) Runtime() *Runtime { return p.runtime.Load() }

// Stats counts client sessions.
type Stats struct {
	Clients        int64 `json:"clients"`
	ClientsActive  int64 `json:"clientsActive"`
	ClientsWaiting int64 `json:"clientsWaiting"`
	ClientsIdle    int64 `json:"clientsIdle"`
	Accepted       int64 `json:"clientsAcceptedTotal"`
	// Statements is the number of distinct prepared statements in the shared registry,
	// StatementBytes what they take (bounded by the budget), StatementsEvicted how many left it
	// to stay within the budget.
	Statements        int   `json:"preparedStatements"`
	StatementBytes    int64 `json:"preparedStatementBytes"`
	StatementsEvicted int64 `json:"preparedStatementsEvicted"`
	// Replays counts requests sent again on a fresh connection because the first one was found
	// terminated (pg_terminate_backend, a restart) before it answered.
	Replays int64 `json:"replays"`
	// RelayLoopEntries counts the times a session moved onto the relay loop, RelayLoopHandoffs
	// the times the loop gave one back to a goroutine (Runtime.RelayLoop).
	RelayLoopEntries  int64 `json:"relayLoopEntries"`
	RelayLoopHandoffs int64 `json:"relayLoopHandoffs"`
	// LoggingIn are connections that have not finished startup and authentication.
	LoggingIn int64 `json:"clientsLoggingIn"`
	// LoginQueued are new connections waiting for a place among them (admission.go).
	LoginQueued int64 `json:"clientsLoginQueued"`
	// LoginsEvicted were closed to make room for newer logins (MaxAuthenticating).
	LoginsEvicted int64 `json:"clientsLoginsEvictedTotal"`
	// Refused got 53300: MaxClients clients were logged in, or no place among the logins in
	// progress came free for them in time (admission.go).
	Refused int64 `json:"clientsRefusedTotal"`
}

// Stats returns a snapshot.
func (p *Proxy) Stats() Stats {
	rs := p.stmts.stats()
	return Stats{Clients: p.clients.Load(), ClientsActive: p.inState[StateActive].Load(),
		ClientsWaiting: p.inState[StateWaiting].Load(), ClientsIdle: p.inState[StateIdle].Load(),
		Accepted: p.accepted.Load(), Statements: rs.count, StatementBytes: rs.bytes, StatementsEvicted: rs.evicted,
		Replays: p.replays.Load(), RelayLoopEntries: p.loopEntries.Load(), RelayLoopHandoffs: p.loopHandoffs.Load(),
		LoggingIn: p.admissions.n.Load(), LoginQueued: p.admissions.waiters.Load(),
		LoginsEvicted: p.admissions.evicted.Load(), Refused: p.admissions.refused.Load()}
}

// Drain stops new sessions and closes sessions as soon as they hold no upstream connection
// (between transactions; in session mode, outside a transaction). Sessions inside a
// transaction finish it first.
func (p *Proxy) Drain() {
	p.draining.Store(true)
	p.mu.Lock()
	list := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		list = append(list, s)
	}
	p.mu.Unlock()
	for _, s := range list {
		s.kickIfIdle()
	}
}

// Draining reports whether Drain was called.
func (p *Proxy) Draining() bool { return p.draining.Load() }

// CloseAll force-closes every session (end of the drain deadline).
func (p *Proxy) CloseAll() {
	p.mu.Lock()
	list := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		list = append(list, s)
	}
	p.mu.Unlock()
	for _, s := range list {
		// A session parked in the reactor has no goroutine to notice the close: resume it
		// first (its registration is removed while the fd is still open).
		s.closeReq.Store(true)
		s.wake()
		s.withConn(func(c net.Conn) { _ = c.Close() })
	}
}

// takeClientPlace takes one of limit places for a logged-in client, or reports false when all
// are taken (limit 0: no limit). Check and take are one step, so concurrent logins never end
// with more than limit clients.
func (p *Proxy) takeClientPlace(limit int) bool {
	for {
		n := p.clients.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if p.clients.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// register issues a cancel key for s.
func (p *Proxy) register(s *session) {
	var b [8]byte
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 {
			continue
		}
		if _, taken := p.sessions[pid]; taken {
			continue
		}
		s.pid = pid
		copy(s.secret[:], b[4:])
		p.sessions[pid] = s
		s.parkNext = true // a new session parks as soon as it waits: startup grew its goroutine's stack
		p.startJanitorLocked()
		return
	}
}

func (p *Proxy) unregister(s *session) {
	p.mu.Lock()
	if p.sessions[s.pid] == s {
		delete(p.sessions, s.pid)
	}
	p.mu.Unlock()
}

// cancel forwards a CancelRequest to the upstream connection the session holds, if any.
func (p *Proxy) cancel(pid uint32, secret []byte) {
	p.mu.Lock()
	s := p.sessions[pid]
	p.mu.Unlock()
	if s == nil || len(secret) != len(s.secret) || subtle.ConstantTimeCompare(secret, s.secret[:]) != 1 {
		return
	}
	s.cancelUpstream()
}

// paramDefaults returns the shared defaults of the tracked parameters for params.
func (p *Proxy) paramDefaults(params []serverParam) map[string]string {
	if d := p.defaults.Load(); d != nil {
		return *d
	}
	d := paramDefaults(params)
	p.defaults.CompareAndSwap(nil, &d)
	return *p.defaults.Load()
}

// defaultParams is the paramSet of clients that want the defaults (shared by them all).
func (p *Proxy) defaultParams(defaults map[string]string) *paramSet {
	if ps := p.defaultPS.Load(); ps != nil {
		return ps
	}
	ps := &paramSet{}
	for i, name := range trackedParams {
		ps.vals[i] = defaults[name]
	}
	p.defaultPS.CompareAndSwap(nil, ps)
	return p.defaultPS.Load()
}

// serverParams returns the ParameterStatus values clients see, learned from an upstream
// connection once.
func (p *Proxy) serverParams(ctx context.Context) ([]serverParam, error) {
	if ps := p.params.Load(); ps != nil {
		return *ps, nil
	}
	p.paramsOnce.Lock()
	defer p.paramsOnce.Unlock()
	if ps := p.params.Load(); ps != nil {
		return *ps, nil
	}
	c, err := p.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	var ps []serverParam
	for _, name := range []string{"server_version", "server_encoding", "client_encoding", "DateStyle",
		"IntervalStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings",
		"default_transaction_read_only", "in_hot_standby", "application_name"} {
		if v := c.PgConn().ParameterStatus(name); v != "" {
			ps = append(ps, serverParam{name, v})
		}
	}
	p.params.Store(&ps)
	return ps, nil
}
