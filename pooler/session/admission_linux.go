package session

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// hasSpoken reports whether conn has bytes waiting to be read (or is not a plain TCP
// connection, whose transport has spoken already), without reading them or waiting. It does
// not take conn's read lock, so it may look at a connection whose session is blocked reading it.
func hasSpoken(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return true
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return true
	}
	spoken := false
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		spoken = err == nil && n > 0
	})
	return spoken
}

// waitSpoken is hasSpoken, waiting up to wait for the first bytes (the caller is the only
// reader of conn: it holds conn's read lock meanwhile).
func waitSpoken(conn net.Conn, wait time.Duration) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return true
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return true
	}
	if wait > 0 {
		_ = tc.SetReadDeadline(time.Now().Add(wait))
		defer func() { _ = tc.SetReadDeadline(time.Time{}) }()
	}
	spoken := false
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) && wait > 0 {
			return false // not yet: wait for readability or the deadline
		}
		spoken = err == nil && n > 0
		return true
	})
	return spoken
}
