//go:build !linux

package session

import (
	"net"
	"time"
)

// hasSpoken: without a cheap peek every connection counts as having spoken (only stalled
// logins make room; otherwise newcomers are refused).
func hasSpoken(net.Conn) bool { return true }

func waitSpoken(net.Conn, time.Duration) bool { return true }
