package session

import (
	"errors"
	"net"
	"time"

	"github.com/edgepool/edgepool/pooler/pool"
)

// Types of the relay loop (evloop_linux.go) that the rest of the session code refers to.

var (
	// errWouldBlock: a non-blocking read found nothing (the loop waits for the next event).
	// It is a temporary net.Error, so crypto/tls keeps a record it read half of and carries on
	// with the next read.
	errWouldBlock error = wouldBlock{}
	// errLoopWait: no idle connection; the loop queues the session for one.
	errLoopWait = errors.New("relay loop: wait for a connection")
	// errLoopHandoff: the session continues on a goroutine from where it is.
	errLoopHandoff = errors.New("relay loop: hand off to a goroutine")
	// errLoopEnding: the session must end between transactions (drain, revoked key).
	errLoopEnding = errors.New("relay loop: session ending")
)

// Loop event kinds (post).
const (
	evCheck uint8 = iota // look at the session's flags and kicks
	evConn               // the pool's answer to a queued session (c may be nil: none)
	evRead               // read what the session has (TLS: crypto/tls may hold bytes already read)
)

type loopEvent struct {
	s    *session
	c    *pool.Conn
	kind uint8
}

// loopState is what a session needs while the loop runs it.
type loopState struct {
	conn    loopConn
	wait    *pool.Waiter // queued for a connection
	since   time.Time    // when it started waiting for one (the pool's deadline counts from it)
	pre     *pool.Conn   // a connection borrowed for it, not attached yet
	leaving func() error // handoff asked while a connection was on its way to it
	// tls: the session's TLS conn, whose transport (the session's tlsSwap) is the loop's
	// descriptor while the loop holds it; nil for plain TCP.
	tls net.Conn
	// more: the last read stopped with the buffer full; read again once there is room.
	more bool
	// stay: handed off; the goroutine reads the client itself once before the session may
	// enter the loop again (a client that hung up would otherwise bounce between the two).
	stay   bool
	notify func(*pool.Conn)
}

// loopConn is a loop session's client socket: raw non-blocking reads and writes. A write that
// would block keeps the rest in pending, which the goroutine taking over writes first; so the
// loop never waits for a client.
type loopConn struct {
	fd      int
	drained bool // the last read returned less than asked: nothing more is waiting
	pending []byte
}

// fdReader reads an upstream socket the loop owns for the current borrow.
type fdReader struct {
	fd      int
	drained bool
}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "would block" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// swapConn is a TLS session's transport under crypto/tls, which keeps the conn it was given:
// the relay loop swaps what is under it (the TCP socket, or the loop's non-blocking descriptor)
// and the TLS state carries on.
type swapConn struct{ net.Conn }

// loopTimeout stands for the read deadline a kick sets on a goroutine's socket.
type loopTimeout struct{}

func (loopTimeout) Error() string   { return "kicked" }
func (loopTimeout) Timeout() bool   { return true }
func (loopTimeout) Temporary() bool { return true }

// carryOn continues the client loop after err, as loop does after a round.
func (s *session) carryOn(err error) {
	if s.afterRound(err) {
		s.loop(s.ctx)
	}
}
