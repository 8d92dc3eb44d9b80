//go:build linux

package main

import (
	"net"
)

// serveGoroutines: one goroutine per client; it reads what the client sent, takes an upstream
// connection off the channel, writes, relays the answers until every ReadyForQuery owed has
// come, and puts the connection back when the transaction is over.
func serveGoroutines(ln net.Listener, conns []net.Conn) error {
	pool := make(chan net.Conn, len(conns))
	for _, c := range conns {
		pool <- c
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relayClient(c, pool)
	}
}

func relayClient(c net.Conn, pool chan net.Conn) {
	defer func() { _ = c.Close() }()
	if greet(c) != nil {
		return
	}
	in := make([]byte, 8192)
	answer := make([]byte, 64<<10)
	var srv net.Conn
	var sc answerScanner
	buffered := 0
	for {
		n, err := c.Read(in[buffered:])
		if err != nil {
			break
		}
		buffered += n
		k, owed := requests(in[:buffered])
		if k == 0 {
			if buffered == len(in) {
				break // a message larger than the lab handles
			}
			continue
		}
		if in[0] == 'X' {
			break
		}
		if srv == nil {
			srv = <-pool
		}
		if _, err := srv.Write(in[:k]); err != nil {
			panic(err) // the upstream is gone: nothing left to measure
		}
		buffered = copy(in, in[k:buffered])
		clientGone := false
		for owed > 0 {
			m, err := srv.Read(answer)
			if err != nil {
				panic(err)
			}
			owed -= sc.feed(answer[:m])
			if !clientGone {
				_, err = c.Write(answer[:m])
				clientGone = err != nil
			}
		}
		if sc.status == 'I' {
			pool <- srv
			srv = nil
		}
		if clientGone {
			break
		}
	}
	if srv != nil {
		_ = srv.Close() // left inside a transaction: not safe to share (the lab does not replace it)
	}
}
