package session

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepool/edgepool/pooler/auth"
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

	state    atomic.Int32  // State; see setState
	activity activity      // phase and since when, for the janitor
	kick     atomic.Uint64 // why the janitor cut a wait short, and the activity it saw (janitor.go)

	// Client input and output; nil while parked in the reactor (parkIO).
	r *msgReader
	w *msgWriter

	pid     uint32
	secret  [4]byte
	user    string
	key     auth.KeyID  // the key the client proved (checked again on reload)
	revoked atomic.Bool // the key is no longer valid: end between transactions (revoke.go)
	adm     *admission  // while logging in (admission.go)

	defaults  map[string]string   // tracked parameters' values on fresh connections (shared, read-only)
	overrides map[string]string   // where this client wants others (params.go)
	wants     *paramSet           // cached view of defaults+overrides (params.go)
	stmts     map[string]*stmtDef // client statement name → shared definition (nil until the first)

	ctx     context.Context // the session's context, for resuming a parked session
	parkTok uint64          // reactor entry while parked; guarded by the reactor's mu
	parkFD  int32           // the socket's descriptor + 1 while parked in the reactor (no net.Conn then)
	done    func(error)     // told once when the session ends
	// connMu guards conn against the janitor, Drain and CloseAll while parking swaps it (the
	// session's own goroutine reads it without).
	connMu sync.Mutex

	// Relay state, owned by the goroutine running the client loop.
	srv    *upstream  // attached connection; written under linkMu
	linkMu sync.Mutex // held by cancel requests so the connection stays attached

	closeReq      atomic.Bool // CloseAll is closing the connection
	hungUp        atomic.Bool // the janitor found the client gone during a query (cancelled)
	replay        replayState // see loop.go
	park          bool        // hand idle waits to the reactor or a fresh goroutine (ServeConnAsync)
	parkNext      bool        // park at the next idle wait (after startup; the janitor's kick)
	ended         bool
	skipUntilSync bool // an extended-protocol batch whose connection could not be had

	// inLoop: the relay loop runs the session (evloop_linux.go); set and cleared under the
	// reactor's mu. ev is the loop's state for it (nil until it first enters).
	inLoop atomic.Bool
	ev     *loopState
	// tlsSwap: a TLS session's transport, which the relay loop can swap (evloop.go).
	tlsSwap *swapConn
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
	s.end(s.finish(err))
}

// resume carries on with the client loop on a fresh goroutine after the reactor saw the idle
// session's socket become readable (or Drain / CloseAll woke it).
func (s *session) resume() {
	defer func() {
		if r := recover(); r != nil {
			s.onPanic(r)
		}
	}()
	err := s.unparkSocket()
	if err != nil {
		s.setConn(goneConn{}) // no descriptor left to make it with: the client is dropped
	}
	s.unparkIO()
	if err == nil && s.closeReq.Load() {
		err = errors.New("closed by the pooler")
	}
	if err != nil {
		s.endAfterError(err)
		return
	}
	s.loop(s.ctx)
}

// setConn replaces the session's socket (parking in the reactor, resuming).
func (s *session) setConn(c net.Conn) {
	s.connMu.Lock()
	s.conn = c
	s.connMu.Unlock()
}

// withConn runs f on the session's socket unless it is parked without one. Other goroutines
// (janitor, Drain, CloseAll) reach the socket only through it.
func (s *session) withConn(f func(net.Conn)) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		f(s.conn)
	}
}

// goneConn stands in for a client socket that could not be made again from its parked
// descriptor (descriptors exhausted): everything fails, so the session ends.
type goneConn struct{}

var errGoneConn = errors.New("client socket lost while parked")

func (goneConn) Read([]byte) (int, error)         { return 0, errGoneConn }
func (goneConn) Write([]byte) (int, error)        { return 0, errGoneConn }
func (goneConn) Close() error                     { return nil }
func (goneConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (goneConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (goneConn) SetDeadline(time.Time) error      { return errGoneConn }
func (goneConn) SetReadDeadline(time.Time) error  { return errGoneConn }
func (goneConn) SetWriteDeadline(time.Time) error { return errGoneConn }

// Readers and writers of sessions parked in the reactor go back to these pools: a parked
// session reads and writes nothing, so it keeps only the session struct and its socket.
var (
	readerPool = sync.Pool{New: func() any { return new(msgReader) }}
	writerPool = sync.Pool{New: func() any { return new(msgWriter) }}
)

// parkIO gives back the client reader and writer (the reader holds no buffer when called);
// the bytes they counted go to the metrics.
func (s *session) parkIO() {
	s.proxy.Observer.Bytes(s.r.bytesIn, s.w.bytesOut)
	s.r.release()
	*s.r = msgReader{}
	*s.w = msgWriter{}
	readerPool.Put(s.r)
	writerPool.Put(s.w)
	s.r, s.w = nil, nil
}

// unparkIO takes a reader and writer again for a session leaving the reactor.
func (s *session) unparkIO() {
	if s.r != nil {
		return
	}
	s.r = readerPool.Get().(*msgReader)
	s.r.conn, s.r.maxBody, s.r.keep = s.conn, s.rt.MaxMessageBytes, -1
	s.w = writerPool.Get().(*msgWriter)
	s.w.conn = s.conn
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
	s.enter(phaseParked) // before ending(): see waitClient
	if s.ending() {
		return s.endNow()
	}
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
