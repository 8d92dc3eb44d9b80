//go:build !linux

// Package sockpoll asks the kernel about a connection's socket without reading from it (Linux;
// elsewhere nothing is known).
package sockpoll

import "net"

// Events of Pending.
const (
	In    = 0x1
	RDHup = 0x2000
	Hup   = 0x10
	Err   = 0x8
)

// Pending knows nothing here.
func Pending(net.Conn, int16) (revents int16, known bool) { return 0, false }
