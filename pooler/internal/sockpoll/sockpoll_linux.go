//go:build linux

// Package sockpoll asks the kernel about a connection's socket without reading from it: the
// pool checks an idle upstream connection before handing it out, the janitor checks whether a
// client hung up during a long query.
package sockpoll

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Events of Pending.
const (
	In    = unix.POLLIN    // something to read
	RDHup = unix.POLLRDHUP // the peer closed its end
	Hup   = unix.POLLHUP
	Err   = unix.POLLERR
)

// Pending reports, without blocking, which of events (plus Hup and Err) are pending on conn's
// socket: poll(2) with a zero timeout; a TLS connection is asked about its socket. known is
// false when conn has no socket to ask or the call failed.
func Pending(conn net.Conn, events int16) (revents int16, known bool) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	var control func(func(fd uintptr)) error
	switch c := conn.(type) {
	case Controller:
		control = c.Control
	case syscall.Conn:
		rc, err := c.SyscallConn()
		if err != nil {
			return 0, false
		}
		control = rc.Control
	default:
		return 0, false
	}
	if err := control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		if _, err := unix.Poll(fds, 0); err == nil {
			revents, known = fds[0].Revents, true
		}
	}); err != nil {
		return 0, false
	}
	return revents, known
}

// Dup duplicates conn's descriptor (close-on-exec; it shares the socket, and its non-blocking
// mode). Closing conn then takes the socket out of Go's netpoller while the duplicate keeps it
// open: the pooler's own epoll set can watch it alone.
func Dup(conn syscall.Conn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(f uintptr) { fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// FromFD makes a net.Conn, in Go's netpoller again, from a descriptor taken with Dup, and
// closes the descriptor.
func FromFD(fd int) (net.Conn, error) {
	// Blocking first, so that os.NewFile does not put it in the netpoller: FileConn makes its
	// own duplicate (non-blocking, polled) for the net.Conn.
	if err := unix.SetNonblock(fd, false); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("socket from descriptor: %w", err)
	}
	f := os.NewFile(uintptr(fd), "socket")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("socket from descriptor: %w", err)
	}
	return c, nil
}

// CloseFD closes a descriptor taken with Dup.
func CloseFD(fd int) error { return unix.Close(fd) }
