//go:build !linux

// Package sockpoll asks the kernel about a connection's socket without reading from it (Linux;
// elsewhere nothing is known).
package sockpoll

import (
	"errors"
	"net"
	"syscall"
)

// Events of Pending.
const (
	In    = 0x1
	RDHup = 0x2000
	Hup   = 0x10
	Err   = 0x8
)

// Pending knows nothing here.
func Pending(net.Conn, int16) (revents int16, known bool) { return 0, false }

// Dup is not supported here.
func Dup(syscall.Conn) (int, error) { return -1, errors.ErrUnsupported }

// FromFD is not supported here.
func FromFD(int) (net.Conn, error) { return nil, errors.ErrUnsupported }

// CloseFD is not supported here.
func CloseFD(int) error { return errors.ErrUnsupported }
