//go:build linux

// Command relaymodels is a measuring instrument, not a pooler: two minimal transaction-mode
// relays that differ only in their concurrency model, so `bench/models.sh` can put a number on
// what the model alone costs next to PgBouncer and edgepool (docs/benchmarks.md, "Relay
// models").
//
//   - -model goroutine: a goroutine per client, blocking reads and writes through Go's netpoller,
//     upstream connections handed over on a channel — the shape of edgepool's relay today,
//     without any of its protocol work.
//   - -model loop: -loops event loops, each on its own locked OS thread with its own epoll set,
//     clients and upstream connections as non-blocking descriptors that never park a goroutine —
//     the shape of PgBouncer's single libevent loop.
//
// Both relay bytes only: a client's complete messages go to an upstream connection, the
// upstream's answer goes back as it arrives, and the connection returns to the pool when
// ReadyForQuery says idle ('I'). There is no authentication (a client is told it is logged
// in at once), no message checking and no timeouts, so it listens on loopback only and serves
// pgbench -S and TPC-B style traffic (simple or unnamed extended protocol); never deploy it.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	model := flag.String("model", "loop", "concurrency model: goroutine | loop")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	upstream := flag.String("upstream", "", "PostgreSQL connection URL of the upstream (required)")
	poolSize := flag.Int("pool", 20, "upstream connections")
	loops := flag.Int("loops", 1, "event loops (-model loop)")
	flag.Parse()
	err := run(*model, *listen, *upstream, *poolSize, *loops)
	fmt.Fprintln(os.Stderr, "relaymodels:", err)
	os.Exit(1)
}

// run serves until the listener fails and returns why.
func run(model, listen, upstream string, poolSize, loops int) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: loopback only (no authentication)", listen)
	}
	if upstream == "" || poolSize < 1 || loops < 1 {
		return errors.New("-upstream is required; -pool and -loops must be positive")
	}
	conns := make([]net.Conn, poolSize)
	for i := range conns {
		if conns[i], err = dial(upstream); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	log.Printf("relaymodels: %s model on %s, %d upstream connections", model, ln.Addr(), poolSize)
	switch model {
	case "goroutine":
		return serveGoroutines(ln, conns)
	case "loop":
		return serveLoops(ln, conns, min(loops, runtime.GOMAXPROCS(0)))
	}
	return fmt.Errorf("-model %q: want goroutine or loop", model)
}

// dial opens one upstream connection and takes its socket from pgconn.
func dial(url string) (net.Conn, error) {
	pc, err := pgconn.Connect(context.Background(), url)
	if err != nil {
		return nil, err
	}
	h, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	return h.Conn, nil
}

// greet reads the client's startup packet and tells it it is logged in.
func greet(c net.Conn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > 10000 {
		return fmt.Errorf("startup packet of %d bytes", n)
	}
	if _, err := io.CopyN(io.Discard, c, int64(n-4)); err != nil {
		return err
	}
	_, err := c.Write(loggedIn)
	return err
}

// loggedIn: AuthenticationOk, the parameters clients look for, BackendKeyData, ReadyForQuery.
var loggedIn = func() []byte {
	b := []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}
	for _, kv := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"},
		{"standard_conforming_strings", "on"}, {"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}} {
		b = append(b, 'S')
		b = binary.BigEndian.AppendUint32(b, uint32(4+len(kv[0])+1+len(kv[1])+1))
		b = append(append(append(append(b, kv[0]...), 0), kv[1]...), 0)
	}
	b = append(b, 'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1)
	return append(b, 'Z', 0, 0, 0, 5, 'I')
}()
