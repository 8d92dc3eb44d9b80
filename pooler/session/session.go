package session

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// session is one client connection. Files: startup.go (startup and authentication), loop.go
// (the client loop), forward.go (client → upstream), upstream.go (upstream → client),
// release.go (borrowing and handing back connections), janitor.go (timeouts), watch.go
// (session mode's idle watcher), reactor_*.go (idle sessions without a goroutine), state.go.
//
// An idle session holds only this struct, its socket and its client's statement names: the
// buffers below come from pools while it has work.
type session struct {
	proxy  *Proxy
	conn   net.Conn
	opts   Options
	rt     *Runtime
	secure bool

	state    atomic.Int32 // State; see setState
	activity activity     // phase and since when, for the janitor
	kick     atomic.Uint32
	kickAt   atomic.Uint64 // the activity the janitor saw when it kicked

	r msgReader // client input
	w msgWriter // client output

	pid    uint32
	secret [4]byte
	user   string

	defaults  map[string]string   // tracked parameters' values on fresh connections (shared, read-only)
	overrides map[string]string   // where this client wants others (params.go)
	wants     *paramSet           // cached view of defaults+overrides (params.go)
	stmts     map[string]*stmtDef // client statement name → shared definition (nil until the first)

	park     bool            // hand idle waits to the reactor or a fresh goroutine (ServeConnAsync)
	parkNext bool            // park at the next idle wait (after startup; the janitor's kick)
	ctx      context.Context // the session's context, for resuming a parked session
	parkTok  uint64          // reactor entry while parked; guarded by the reactor's mu
	closeReq atomic.Bool     // CloseAll is closing the connection
	done     func(error)     // told once when the session ends
	ended    bool

	// Relay state, owned by the goroutine running the client loop.
	srv           *upstream   // attached connection; written under linkMu
	linkMu        sync.Mutex  // held by cancel requests so the connection stays attached
	attachedAt    time.Time   // for the transaction-duration metric
	skipUntilSync bool        // an extended-protocol batch whose connection could not be had
	replay        replayState // see loop.go
	fatalRelayed  bool        // the upstream's own FATAL reached the client
	hungUp        atomic.Bool // the janitor found the client gone during a query (cancelled)
	watch         *watcher    // session mode: relays what the server says while the client is idle
}

// endAfterError ends the session after a read or handling error. A protocol violation is
// answered with FATAL 08P01, as PostgreSQL does.
func (s *session) endAfterError(err error) {
	if errors.Is(err, ErrProtocol) {
		s.fatal("08P01", err.Error())
	}
	var tl *tooLargeError
	if errors.As(err, &tl) {
		s.fatal("54000", tl.Error())
	}
	if errors.Is(err, errEnded) {
		err = nil
	}
	s.end(s.finish(err), true)
}

// resume carries on with the client loop on a fresh goroutine after the reactor saw the idle
// session's socket become readable (or Drain / CloseAll woke it).
func (s *session) resume() {
	defer func() {
		if r := recover(); r != nil {
			s.onPanic(r)
		}
	}()
	s.loop(s.ctx)
}

// resumeAfterWait waits, holding no buffer, for the idle session's next bytes, then carries
// on with the client loop: idle sessions of connections the reactor cannot watch (TLS, and
// WebSocket payloads in ServeConn) wait this way.
func (s *session) resumeAfterWait() {
	defer func() {
		if r := recover(); r != nil {
			s.onPanic(r)
		}
	}()
	if err := s.waitParked(); err != nil {
		if !errors.Is(err, errParked) {
			s.endAfterError(err)
		}
		return
	}
	s.loop(s.ctx)
}

// waitParked is the parked wait of a session without reactor: a blocking read of the first
// bytes of the next message into a 5-byte array.
func (s *session) waitParked() error {
	if s.proxy.draining.Load() {
		s.fatal("57P01", "the pooler is shutting down")
		return errEnded
	}
	s.enter(phaseParked)
	for {
		err := s.r.waitParked()
		if err == nil {
			s.enter(phaseBusy)
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
		if err := s.readFailed(err, false, phaseParked, 0); err != nil {
			return err
		}
	}
}
