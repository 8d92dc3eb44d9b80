//go:build !linux

package pool

import "net"

// socketQuiet has no cheap check here; the background health check finds dead connections.
func socketQuiet(net.Conn) bool { return true }
