package pool

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
)

// Sock is an upstream connection's TCP socket as pgconn holds it (DialSock wraps what the
// dialer returns). A borrower that relays bytes on an event loop of its own (the session's relay
// loop) can take the socket out of Go's netpoller while it holds the connection (Detach): the
// netpoller then no longer wakes for every answer the server sends. The socket stays that way
// while the connection sits idle in the pool and is borrowed by the loop again; the first use
// through net.Conn (pgconn, a relay on a goroutine, TCP) puts it back, transparently.
//
// Detach and the use through net.Conn follow the borrow: one holder at a time. mu orders the
// moves (Detach, the way back, Close, Control) with each other; the use through net.Conn reads
// tc without it.
type Sock struct {
	mu     sync.Mutex
	tc     atomic.Pointer[net.TCPConn] // the socket in Go's netpoller; nil while detached
	fd     int                         // while detached: the descriptor (non-blocking), else -1
	unreg  func(fd int)                // while detached: takes fd out of the borrower's epoll set
	closed bool
	local  net.Addr
	remote net.Addr
	moves  *sockMoves // the pool's counters (set when the pool opens the connection)
}

// sockMoves counts sockets taken out of Go's netpoller and put back (Stats).
type sockMoves struct{ detached, attached atomic.Int64 }

// DialSock wraps dial so that TCP connections come back as a *Sock (others as they are).
func DialSock(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		s := &Sock{fd: -1, local: tc.LocalAddr(), remote: tc.RemoteAddr()}
		s.tc.Store(tc)
		return s, nil
	}
}

// TCP returns the socket as a net.Conn in Go's netpoller, making it again if it is detached;
// nil once closed (or when it cannot be made again: the socket is then closed).
func (s *Sock) TCP() *net.TCPConn {
	if tc := s.tc.Load(); tc != nil {
		return tc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attachLocked()
}

func (s *Sock) attachLocked() *net.TCPConn {
	if tc := s.tc.Load(); tc != nil || s.closed {
		return tc
	}
	fd := s.fd
	s.unreg(fd)
	s.fd, s.unreg = -1, nil
	c, err := sockpoll.FromFD(fd)
	if err != nil {
		s.closed = true // FromFD closed the descriptor
		return nil
	}
	tc := c.(*net.TCPConn)
	s.tc.Store(tc)
	if s.moves != nil {
		s.moves.attached.Add(1)
	}
	return tc
}

// Detach takes the socket out of Go's netpoller and returns its descriptor (non-blocking),
// which register has added to the caller's epoll set; unregister is called to take it out
// again before the socket goes back to the netpoller or is closed. A socket detached already
// returns its descriptor (register is not called again). Only the borrower may call it, and
// pgconn must be idle (see Conn.Socket).
func (s *Sock) Detach(register func(fd int) error, unregister func(fd int)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return -1, net.ErrClosed
	}
	tc := s.tc.Load()
	if tc == nil {
		return s.fd, nil
	}
	fd, err := sockpoll.Dup(tc)
	if err != nil {
		return -1, err
	}
	if err := register(fd); err != nil {
		_ = sockpoll.CloseFD(fd)
		return -1, err
	}
	s.tc.Store(nil)
	s.fd, s.unreg = fd, unregister
	_ = tc.Close() // its netpoller registration goes; the duplicate keeps the socket open
	if s.moves != nil {
		s.moves.detached.Add(1)
	}
	return fd, nil
}

// Control runs f on the socket's descriptor, detached or not (sockpoll.Pending).
func (s *Sock) Control(f func(fd uintptr)) error {
	s.mu.Lock()
	tc := s.tc.Load()
	if tc == nil {
		defer s.mu.Unlock()
		if s.closed {
			return net.ErrClosed
		}
		f(uintptr(s.fd))
		return nil
	}
	s.mu.Unlock()
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(f)
}

func (s *Sock) conn() (*net.TCPConn, error) {
	if tc := s.TCP(); tc != nil {
		return tc, nil
	}
	return nil, net.ErrClosed
}

// Read reads through Go's netpoller (a detached socket comes back first).
func (s *Sock) Read(p []byte) (int, error) {
	tc, err := s.conn()
	if err != nil {
		return 0, err
	}
	return tc.Read(p)
}

// Write writes through Go's netpoller (a detached socket comes back first).
func (s *Sock) Write(p []byte) (int, error) {
	tc, err := s.conn()
	if err != nil {
		return 0, err
	}
	return tc.Write(p)
}

// Close closes the socket, detached or not.
func (s *Sock) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.closed = true
	if tc := s.tc.Load(); tc != nil {
		return tc.Close()
	}
	s.unreg(s.fd)
	fd := s.fd
	s.fd, s.unreg = -1, nil
	return sockpoll.CloseFD(fd)
}

// LocalAddr is the socket's local address (as dialed).
func (s *Sock) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the server's address (as dialed).
func (s *Sock) RemoteAddr() net.Addr { return s.remote }

// SetDeadline sets the socket's deadlines; a detached socket comes back first (a deadline is
// for a use through net.Conn).
func (s *Sock) SetDeadline(t time.Time) error { return s.setDeadline((*net.TCPConn).SetDeadline, t) }

// SetReadDeadline is SetDeadline for reads.
func (s *Sock) SetReadDeadline(t time.Time) error {
	return s.setDeadline((*net.TCPConn).SetReadDeadline, t)
}

// SetWriteDeadline is SetDeadline for writes.
func (s *Sock) SetWriteDeadline(t time.Time) error {
	return s.setDeadline((*net.TCPConn).SetWriteDeadline, t)
}

func (s *Sock) setDeadline(set func(*net.TCPConn, time.Time) error, t time.Time) error {
	tc, err := s.conn()
	if err != nil {
		return err
	}
	return set(tc, t)
}
