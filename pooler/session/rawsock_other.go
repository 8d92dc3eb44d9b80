//go:build !linux

package session

import "net"

// rawSock is Linux only (rawsock_linux.go); elsewhere connections use their own Read and Write.
type rawSock struct{}

func rawSockFor(*rawSock, net.Conn) *rawSock { return nil }

func (*rawSock) Read([]byte) (int, error)  { panic("rawSock: not on this platform") }
func (*rawSock) Write([]byte) (int, error) { panic("rawSock: not on this platform") }

// withRawIO returns conn itself.
func withRawIO(conn net.Conn) net.Conn { return conn }
