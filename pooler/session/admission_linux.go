package session

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// peek copies the bytes waiting to be read on conn into b without reading them or waiting, and
// reports how many (-1: conn is not a plain TCP connection). It does not take conn's read
// lock, so it may look at a connection whose session is blocked reading it.
func peek(conn net.Conn, b []byte) int {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return -1
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return -1
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		got, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == nil {
			n = got
		}
	})
	return n
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
