//go:build linux

package pool

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketQuiet reports whether an idle upstream socket has nothing to say: no bytes to read and
// no hang-up. A server only speaks to an idle connection to say goodbye (a FATAL before it
// closes), so anything pending means the connection is going away. It does not block.
func socketQuiet(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := true
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		quiet = err == nil && n == 0
	}); err != nil {
		return false
	}
	return quiet
}
