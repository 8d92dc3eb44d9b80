//go:build linux

// Package sockpoll asks the kernel about a connection's socket without reading from it: the
// pool checks an idle upstream connection before handing it out, the janitor checks whether a
// client hung up during a long query.
package sockpoll

import (
	"crypto/tls"
	"net"
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
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		if _, err := unix.Poll(fds, 0); err == nil {
			revents, known = fds[0].Revents, true
		}
	}); err != nil {
		return 0, false
	}
	return revents, known
}
