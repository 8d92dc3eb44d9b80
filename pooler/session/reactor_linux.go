//go:build linux

package session

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
)

// The idle-session reactor: a plain TCP client that has been idle between transactions, with
// no buffered input, keeps no goroutine and no Go socket at all. Parking takes the socket out
// of Go's netpoller: the session keeps a duplicate of its file descriptor, registered
// (one-shot) in the pooler's own epoll set, and closes the net.Conn (its netFD, addresses and
// poll descriptor go back to the runtime: about half of what an idle client would otherwise
// cost). One reactor goroutine waits for any parked socket to become readable or hang up and
// resumes that session on a fresh goroutine, with a net.Conn made again from the descriptor.
// Busy clients never get here: the janitor parks a session only after a second of idleness.
//
// Each parking gets a token that is never reused; the epoll event carries the token, not the
// fd, and a token maps to its session only until it is unparked, so a stale event can never
// resume another connection. The session owns its parked descriptor until it resumes (closed
// only after EPOLL_CTL_DEL), so no descriptor number is reused under the reactor.
type reactor struct {
	epfd   int
	mu     sync.Mutex
	next   uint64
	parked map[uint64]*session // parked sessions and the relay loop's, by token
	// gate: an epoll set holding epfd, armed only while run sleeps; wait: the gate in Go's
	// netpoller, where run sleeps (see run).
	gate int
	wait syscall.RawConn
	loopPart
}

var (
	reactorOnce sync.Once
	theReactor  atomic.Pointer[reactor] // set once, when the reactor starts
)

// getReactor returns the process's reactor, starting it on first use; nil if epoll is not
// available (sessions then park on a goroutine).
func getReactor() *reactor {
	reactorOnce.Do(func() {
		if r, err := newReactor(); err == nil {
			theReactor.Store(r)
			go r.run()
		}
	})
	return theReactor.Load()
}

// newReactor makes the epoll set, its wake-up eventfd (token 0) and its gate: a second epoll
// set whose one entry is the first one, disarmed except while run sleeps. The gate is what
// waits in Go's netpoller (non-blocking, so os.NewFile registers it there).
func newReactor() (_ *reactor, err error) {
	var fds []int
	defer func() {
		if err != nil {
			for _, fd := range fds {
				_ = syscall.Close(fd)
			}
		}
	}()
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	fds = append(fds, fd)
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	fds = append(fds, wake)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // token 0: the wake-up
	if err := syscall.EpollCtl(fd, syscall.EPOLL_CTL_ADD, wake, &ev); err != nil {
		return nil, err
	}
	gate, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	fds = append(fds, gate)
	off := syscall.EpollEvent{}
	if err := syscall.EpollCtl(gate, syscall.EPOLL_CTL_ADD, fd, &off); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(gate, true); err != nil {
		return nil, err
	}
	rc, err := os.NewFile(uintptr(gate), "reactor").SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &reactor{epfd: fd, gate: gate, wait: rc, parked: map[uint64]*session{}}
	r.wakefd, r.ups = wake, map[int]*upstream{}
	r.registerUp, r.unregisterUp = r.registerUpstream, r.unregisterUpstream
	return r, nil
}

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// register adds s's descriptor fd (the session's socket is closed already) to the epoll set
// with events under a new token and reports whether it did; the caller's goroutine must then
// leave s alone. loop: the relay loop runs the session (evloop_linux.go); else it is parked and
// resumed on a goroutine at its first event.
func (r *reactor) register(s *session, fd int, events uint32, loop bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	tok := r.next
	ev := tokenEvent(events, tok)
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return false
	}
	s.parkFD = int32(fd) + 1
	s.parkTok = tok
	s.inLoop.Store(loop)
	r.parked[tok] = s
	return true
}

// tokenEvent is an epoll registration for events whose events carry tok; eventToken reads it
// back.
func tokenEvent(events uint32, tok uint64) syscall.EpollEvent {
	return syscall.EpollEvent{Events: events, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
}

func eventToken(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// unpark takes s out of the reactor and reports whether it was parked; the caller then owns
// the session and must resume it.
func (r *reactor) unpark(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	tok := s.parkTok
	if tok == 0 || r.parked[tok] != s || s.inLoop.Load() {
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
	_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(s.parkFD)-1, nil)
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

// run waits for events: parked sessions are resumed on a goroutine; the relay loop's sessions
// and upstream sockets are served right here (evloop_linux.go).
//
// When nothing is ready the reactor's goroutine sleeps in Go's netpoller, on the gate: an epoll
// set whose single entry, the reactor's set, is armed just before the sleep and disarmed after
// it. While the loop runs, events on its sockets therefore wake nothing else: none of its
// sockets is in the netpoller while the loop holds it (client sockets are duplicated and closed
// there, upstream sockets detached: pool.Sock), and the set itself reaches the netpoller only
// through the gate. (With the set registered in the netpoller directly, a netpoller thread was
// woken for every event on it while the loop was busy serving: 1.75 epoll_pwait per transaction
// at 100 clients. Sleeping in a blocking epoll_wait instead kept the runtime's monitor thread
// polling every 20 µs whenever the loop slept: 2.5–3 times the pooler's CPU at 20–200
// transactions a second.)
func (r *reactor) run() {
	events := make([]syscall.EpollEvent, 256)
	var n int
	var errno syscall.Errno
	poll := func(uintptr) bool {
		n, errno = rawEpollWait(r.epfd, events, 0)
		return n > 0 || errno != 0
	}
	armed := syscall.EpollEvent{Events: syscall.EPOLLIN}
	disarmed := syscall.EpollEvent{}
	for {
		r.drainInbox()
		n, errno = rawEpollWait(r.epfd, events, 0)
		if errno == 0 && n == 0 {
			r.sleeping.Store(true)
			if r.inboxN.Load() > 0 {
				r.sleeping.Store(false)
				continue
			}
			// Armed level-triggered: events that came since the look above reach the gate.
			if err := syscall.EpollCtl(r.gate, syscall.EPOLL_CTL_MOD, r.epfd, &armed); err != nil {
				errno = syscall.EIO
			} else if err := r.wait.Read(poll); err != nil {
				errno = syscall.EIO
			}
			_ = syscall.EpollCtl(r.gate, syscall.EPOLL_CTL_MOD, r.epfd, &disarmed)
			r.sleeping.Store(false)
		}
		if errno != 0 {
			if errno != syscall.EINTR {
				time.Sleep(10 * time.Millisecond) // should not happen; do not spin
			}
			continue
		}
		for i := range n {
			r.dispatch(eventToken(&events[i]))
			// A connection released just now goes to the session queued for it at once, not
			// after the rest of the batch: the pool is what clients wait for.
			r.drainInbox()
		}
	}
}

// dispatch handles one epoll event by its token.
func (r *reactor) dispatch(tok uint64) {
	switch {
	case tok == 0:
		var b [8]byte
		_, _ = rawRead(r.wakefd, b[:])
		return
	case tok&upTokenBit != 0:
		r.upstreamReady(int(uint32(tok)))
		return
	}
	r.mu.Lock()
	s := r.parked[tok]
	if s == nil {
		r.mu.Unlock()
		return
	}
	if s.inLoop.Load() {
		r.mu.Unlock()
		r.guard(s, func() { r.clientReady(s) })
		return
	}
	r.take(tok)
	r.mu.Unlock()
	go s.resume()
}

func rawEpollWait(epfd int, events []syscall.EpollEvent, msec int) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(n), errno
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
		if r := getReactor(); r != nil {
			if fd, err := sockpoll.Dup(tc); err == nil {
				s.parkIO()
				s.setConn(nil)
				_ = tc.Close() // the duplicate keeps the socket open
				if r.register(s, fd, parkEvents, false) {
					// Drain, CloseRevoked or CloseAll may have looked for this session before
					// it was registered; they set their flag first, so this check cannot miss
					// both.
					if s.ending() || s.closeReq.Load() {
						s.wake()
					}
					return errParked
				}
				if err := s.attachSocket(fd); err != nil {
					s.setConn(goneConn{})
					s.unparkIO()
					return err
				}
				s.unparkIO()
			}
		}
	}
	go s.resumeAfterWait()
	return errParked
}

// attachSocket makes the session's net.Conn again from a parked descriptor (which it closes).
func (s *session) attachSocket(fd int) error {
	c, err := sockpoll.FromFD(fd)
	if err != nil {
		return fmt.Errorf("resume parked socket: %w", err)
	}
	s.setConn(c)
	return nil
}

// unparkSocket gives a session leaving the reactor its net.Conn back.
func (s *session) unparkSocket() error {
	if s.parkFD == 0 {
		return nil
	}
	fd := int(s.parkFD) - 1
	s.parkFD = 0
	return s.attachSocket(fd)
}

// wake resumes s if it is parked in the reactor (drain, CloseAll).
func (s *session) wake() bool {
	// Nothing can be parked before the reactor exists.
	r := theReactor.Load()
	if r != nil && s.inLoop.Load() {
		r.post(loopEvent{s: s, kind: evCheck}) // the relay loop ends or closes it itself
		return true
	}
	if r != nil && r.unpark(s) {
		go s.resume()
		return true
	}
	return false
}

// postCheck asks the relay loop to look at a session of its (a kick).
func (s *session) postCheck() {
	if r := theReactor.Load(); r != nil {
		r.post(loopEvent{s: s, kind: evCheck})
	}
}
