//go:build linux

package session

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The idle-session reactor: a plain TCP client that is idle between transactions, with no
// buffered input, keeps no goroutine at all. Its socket is registered (one-shot) in the
// pooler's own epoll set; one reactor goroutine waits for any parked socket to become readable
// or hang up and then resumes that session on a fresh goroutine, where ordinary reads go
// through Go's netpoller again (an fd may sit in several epoll sets).
//
// Each parking gets a token that is never reused; the epoll event carries the token, not the
// fd, and a token maps to its session only until it is unparked. An event for a socket that
// was unparked (or closed, and its fd number reused) finds no entry and is ignored, so it can
// never resume another connection. Registration and removal run inside RawConn.Control, which
// holds the fd open: EPOLL_CTL_DEL never reaches a reused fd. A socket closed while registered
// leaves the epoll set by itself (the kernel drops closed files).
type reactor struct {
	epfd   int
	mu     sync.Mutex
	next   uint64
	parked map[uint64]*session
}

var (
	reactorOnce sync.Once
	theReactor  atomic.Pointer[reactor] // set once, when the reactor starts
)

// getReactor returns the process's reactor, starting it on first use; nil if epoll is not
// available (sessions then park on a goroutine).
func getReactor() *reactor {
	reactorOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		r := &reactor{epfd: fd, parked: map[uint64]*session{}}
		theReactor.Store(r)
		go r.run()
	})
	return theReactor.Load()
}

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// park registers s, which must be idle with nothing buffered, and reports whether it did;
// the caller's goroutine must then leave s alone.
func (r *reactor) park(s *session, tc *net.TCPConn) bool {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	tok := r.next
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
		ctlErr = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || ctlErr != nil {
		return false
	}
	s.parkTok = tok
	r.parked[tok] = s
	return true
}

// unpark takes s out of the reactor and reports whether it was parked; the caller then owns
// the session and must resume it.
func (r *reactor) unpark(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	tok := s.parkTok
	if tok == 0 || r.parked[tok] != s {
		return false
	}
	r.remove(tok, s)
	return true
}

// take is unpark by token (an epoll event). Callers hold mu.
func (r *reactor) take(tok uint64) *session {
	s := r.parked[tok]
	if s == nil {
		return nil
	}
	r.remove(tok, s)
	return s
}

// remove deletes the entry and the epoll registration. Callers hold mu.
func (r *reactor) remove(tok uint64, s *session) {
	delete(r.parked, tok)
	s.parkTok = 0
	tc, ok := s.conn.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	// Control fails once the conn is closed: then the kernel has dropped (or will drop, at the
	// last reference) the registration itself, and the fd number must not be touched.
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// parkedCount reports how many sessions of p are parked (tests).
func (r *reactor) parkedCount(p *Proxy) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.parked {
		if s.proxy == p {
			n++
		}
	}
	return n
}

func (r *reactor) run() {
	events := make([]syscall.EpollEvent, 256)
	var ready []*session
	for {
		n, err := syscall.EpollWait(r.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			time.Sleep(10 * time.Millisecond) // should not happen; do not spin
			continue
		}
		r.mu.Lock()
		for i := range n {
			tok := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if s := r.take(tok); s != nil {
				ready = append(ready, s)
			}
		}
		r.mu.Unlock()
		for i, s := range ready {
			go s.resume()
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

// parkIdle hands an idle session's wait for its next message to the reactor (plain TCP) or to
// a fresh goroutine with a small stack, holding no buffer; ServeConn (park off) waits the same
// way on its own goroutine. It returns errParked when the calling goroutine must return at
// once, nil when the client sent something meanwhile (ServeConn).
func (s *session) parkIdle() error {
	s.parkNext = false
	if !s.park {
		return s.waitParked()
	}
	s.enter(phaseParked)
	if tc, ok := s.conn.(*net.TCPConn); ok {
		if r := getReactor(); r != nil && r.park(s, tc) {
			// Drain or CloseAll may have looked for this session before it was registered;
			// they set their flag first, so checking after registering cannot miss both.
			if s.proxy.draining.Load() || s.closeReq.Load() {
				s.wake()
			}
			return errParked
		}
	}
	go s.resumeAfterWait()
	return errParked
}

// wake resumes s if it is parked in the reactor (drain, CloseAll).
func (s *session) wake() {
	// Nothing can be parked before the reactor exists.
	if r := theReactor.Load(); r != nil && r.unpark(s) {
		go s.resume()
	}
}

// clientHungUp reports, without blocking, whether the client closed its end (or the
// connection failed): poll for RDHUP on its socket, which does not consume anything.
func clientHungUp(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			gone = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}
