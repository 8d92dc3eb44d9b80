//go:build linux

package session

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rawSock reads and writes a TCP socket with raw system calls inside Go's poller: RawConn.Read
// and Write wait for readiness (and honour deadlines) as net.Conn does, but the read(2) and
// write(2) themselves skip the scheduler's system-call bookkeeping. On a non-blocking socket
// they never block, and skipping entersyscall means the runtime's monitor thread is not woken
// each time the process turns from idle to busy: with the relay's few system calls per
// transaction that wake-up was about a tenth of the pooler's CPU (perf, pgbench -S -c 20).
type rawSock struct {
	conn  net.Conn // the connection this was made for
	rc    syscall.RawConn
	p     []byte
	n     int
	err   error
	read  func(fd uintptr) bool // method values made once: no allocation per call
	write func(fd uintptr) bool
}

// rawSockFor returns s when it was made for conn, a new one for a plain TCP conn, nil for any
// other conn (TLS, WebSocket payloads), which then use conn's own Read and Write.
func rawSockFor(s *rawSock, conn net.Conn) *rawSock {
	if s != nil && s.conn == conn {
		return s
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s = &rawSock{conn: conn, rc: rc}
	s.read, s.write = s.doRead, s.doWrite
	return s
}

func (s *rawSock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.err = p, 0, nil
	if err := s.rc.Read(s.read); err != nil {
		return 0, err
	}
	s.p = nil
	return s.n, s.err
}

func (s *rawSock) doRead(fd uintptr) bool {
	done := s.call(syscall.SYS_READ, fd)
	if done && s.n == 0 && s.err == nil {
		s.err = io.EOF
	}
	return done
}

// call makes the read or write system call on s.p; false: it would block (wait for readiness).
func (s *rawSock) call(trap, fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&s.p[0])), uintptr(len(s.p)))
		switch e {
		case 0:
			s.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.err = e
		return true
	}
}

func (s *rawSock) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		s.p, s.n, s.err = p[written:], 0, nil
		if err := s.rc.Write(s.write); err != nil {
			return written, err
		}
		written += s.n
		if s.err != nil {
			return written, s.err
		}
	}
	s.p = nil
	return written, nil
}

func (s *rawSock) doWrite(fd uintptr) bool { return s.call(syscall.SYS_WRITE, fd) }

// rawTCPConn is a plain TCP conn whose Read and Write are rawSock's: for crypto/tls, which
// reads and writes the conn it is given (a read and a write may run at once: one rawSock each).
type rawTCPConn struct {
	*net.TCPConn
	r, w *rawSock
}

func (c *rawTCPConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *rawTCPConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// withRawIO returns conn with raw reads and writes when it is plain TCP, else conn itself.
func withRawIO(conn net.Conn) net.Conn {
	r, w := rawSockFor(nil, conn), rawSockFor(nil, conn)
	if r == nil || w == nil {
		return conn
	}
	return &rawTCPConn{TCPConn: conn.(*net.TCPConn), r: r, w: w}
}
