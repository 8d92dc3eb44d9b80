//go:build linux

package session

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testutil"
)

// reactorRig serves a fuzzProxy (no upstream: Sync is answered locally, a query gets the
// query-wait error) on a TCP listener through ServeConnAsync, as the pooler's listener does.
type reactorRig struct {
	px    *Proxy
	key   string
	addr  string
	ended atomic.Int64
	gate  chan struct{} // when set, each Accept waits for a token
	mu    sync.Mutex
	srv   []net.Conn // server-side conns in accept order
}

func newReactorRig(t *testing.T) *reactorRig { return newGatedRig(t, nil) }

func newGatedRig(t *testing.T, gate chan struct{}) *reactorRig {
	t.Helper()
	px, key := fuzzProxy(t)
	px.Runtime().MaxClients = 10000
	l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rig := &reactorRig{px: px, key: key, addr: l.Addr().String(), gate: gate}
	go func() {
		for {
			if rig.gate != nil {
				<-rig.gate
			}
			c, err := l.Accept()
			if err != nil {
				return
			}
			rig.mu.Lock()
			rig.srv = append(rig.srv, c)
			rig.mu.Unlock()
			px.ServeConnAsync(context.Background(), c, Options{}, func(error) { rig.ended.Add(1) })
		}
	}()
	t.Cleanup(func() { l.Close() })
	return rig
}

type rigClient struct {
	c net.Conn
	r *bufio.Reader
}

// connect authenticates a client and waits for its first ReadyForQuery.
func (rig *reactorRig) connect(t *testing.T) *rigClient {
	t.Helper()
	return rig.handshake(t, rig.dial(t))
}

func (rig *reactorRig) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := new(net.Dialer).DialContext(context.Background(), "tcp", rig.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (rig *reactorRig) handshake(t *testing.T, c net.Conn) *rigClient {
	t.Helper()
	if _, err := c.Write(append(startupBytes("fuzz", "app"), passwordBytes(rig.key)...)); err != nil {
		t.Fatal(err)
	}
	cl := &rigClient{c: c, r: bufio.NewReader(c)}
	if err := cl.until('Z'); err != nil {
		t.Fatal("startup:", err)
	}
	return cl
}

// until reads messages up to one of type want; an ErrorResponse before it is returned.
func (cl *rigClient) until(want byte) error {
	_ = cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(cl.r, hdr[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(cl.r, body); err != nil {
			return err
		}
		if hdr[0] == want {
			return nil
		}
		if hdr[0] == 'E' && want != 'E' {
			return fmt.Errorf("error response: %q", body)
		}
	}
}

// roundTrip sends a Sync (answered locally) or a simple query (no upstream: answered with an
// ErrorResponse and ReadyForQuery) and waits for ReadyForQuery.
func (cl *rigClient) roundTrip(query bool) error {
	msg := appendMsg(nil, 'S')
	if query {
		msg = appendMsg(nil, 'Q', []byte("select 1"), zero)
	}
	// Split the header across two writes now and then: a parked session must resume on the
	// first byte and wait for the rest.
	if rand.IntN(4) == 0 {
		if _, err := cl.c.Write(msg[:2]); err != nil {
			return err
		}
		time.Sleep(time.Millisecond) // a header split in time is the subject: the session must wait for the rest
		msg = msg[2:]
	}
	if _, err := cl.c.Write(msg); err != nil {
		return err
	}
	if query {
		if err := cl.until('E'); err != nil {
			return err
		}
	}
	return cl.until('Z')
}

// parked counts this rig's sessions in the (process-wide) reactor.
func (rig *reactorRig) parked() int {
	if r := theReactor.Load(); r != nil {
		return r.parkedCount(rig.px)
	}
	return 0
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd") // linux-only test: always there
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Many idle clients park without goroutines and resume correctly, interleaved and concurrent.
func TestReactorParksAndResumes(t *testing.T) {
	rig := newReactorRig(t)
	g0 := runtime.NumGoroutine()
	const n = 200
	clients := make([]*rigClient, n)
	for i := range clients {
		clients[i] = rig.connect(t)
	}
	testutil.Eventually(t, "all clients parked", 10*time.Second, func() bool { return rig.parked() == n })
	if g := runtime.NumGoroutine() - g0; g > n/10 {
		t.Fatalf("%d goroutines for %d parked clients", g, n)
	}
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, i := range rand.Perm(n) {
			wg.Add(1)
			go func(cl *rigClient, query bool) {
				defer wg.Done()
				for range 3 {
					if err := cl.roundTrip(query); err != nil {
						errs <- fmt.Errorf("round %d client %d: %w", round, i, err)
						return
					}
				}
			}(clients[i], (i+round)%3 == 0)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		testutil.Eventually(t, "clients parked again", 10*time.Second, func() bool { return rig.parked() == n })
	}
	if got := rig.px.Stats().Clients; got != n {
		t.Fatalf("clients = %d, want %d", got, n)
	}
	if rig.ended.Load() != 0 {
		t.Fatalf("%d sessions ended", rig.ended.Load())
	}
}

// A query (which needs an upstream and fails) resumes the session, answers with an error and
// ReadyForQuery, and the session parks again.
func TestReactorQueryThenPark(t *testing.T) {
	rig := newReactorRig(t)
	cl := rig.connect(t)
	testutil.Eventually(t, "parked", 10*time.Second, func() bool { return rig.parked() == 1 })
	if _, err := cl.c.Write(appendMsg(nil, 'Q', []byte("select 1"), zero)); err != nil {
		t.Fatal(err)
	}
	if err := cl.until('E'); err != nil {
		t.Fatal(err)
	}
	if err := cl.until('Z'); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "parked again", 10*time.Second, func() bool { return rig.parked() == 1 })
	if err := cl.roundTrip(false); err != nil {
		t.Fatal(err)
	}
}

// Clients that disconnect while parked are cleaned up: no client count, goroutine, reactor
// entry or fd is left.
func TestReactorParkedDisconnect(t *testing.T) {
	rig := newReactorRig(t)
	fd0 := openFDs(t)
	g0 := runtime.NumGoroutine()
	const n = 100
	var clients []*rigClient
	for range n {
		clients = append(clients, rig.connect(t))
	}
	testutil.Eventually(t, "parked", 10*time.Second, func() bool { return rig.parked() == n })
	for i, cl := range clients {
		if i%2 == 0 {
			_ = cl.c.Close() // hang up without Terminate
		} else {
			_, _ = cl.c.Write(appendMsg(nil, 'X'))
			_ = cl.c.Close()
		}
	}
	testutil.Eventually(t, "sessions ended", 10*time.Second, func() bool { return rig.ended.Load() == n })
	testutil.Eventually(t, "client count zero", 10*time.Second, func() bool { return rig.px.Stats().Clients == 0 })
	if p := rig.parked(); p != 0 {
		t.Fatalf("%d reactor entries left", p)
	}
	testutil.Eventually(t, "fds closed", 10*time.Second, func() bool { return openFDs(t) <= fd0 })
	testutil.Eventually(t, "goroutines gone", 10*time.Second, func() bool { return runtime.NumGoroutine() <= g0+2 })
}

// Drain reaches parked sessions: each gets FATAL 57P01 and is closed.
func TestReactorDrainReachesParked(t *testing.T) {
	rig := newReactorRig(t)
	const n = 50
	var clients []*rigClient
	for range n {
		clients = append(clients, rig.connect(t))
	}
	testutil.Eventually(t, "parked", 10*time.Second, func() bool { return rig.parked() == n })
	rig.px.Drain()
	for i, cl := range clients {
		if err := cl.until('E'); err != nil {
			t.Fatalf("client %d: no FATAL: %v", i, err)
		}
		if _, err := cl.r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d: not closed after the FATAL: %v", i, err)
		}
	}
	testutil.Eventually(t, "sessions ended", 10*time.Second, func() bool { return rig.ended.Load() == n })
	if p := rig.parked(); p != 0 {
		t.Fatalf("%d reactor entries left", p)
	}
}

// CloseAll reaches parked sessions.
func TestReactorCloseAllReachesParked(t *testing.T) {
	rig := newReactorRig(t)
	const n = 50
	var clients []*rigClient
	for range n {
		clients = append(clients, rig.connect(t))
	}
	testutil.Eventually(t, "parked", 10*time.Second, func() bool { return rig.parked() == n })
	rig.px.CloseAll()
	for i, cl := range clients {
		_ = cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(cl.r); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	testutil.Eventually(t, "sessions ended", 10*time.Second, func() bool { return rig.ended.Load() == n })
	testutil.Eventually(t, "client count zero", 10*time.Second, func() bool { return rig.px.Stats().Clients == 0 })
	if p := rig.parked(); p != 0 {
		t.Fatalf("%d reactor entries left", p)
	}
}

// A parked entry whose socket is closed behind the reactor's back (its fd number then reused
// by the next connection) never resumes the connection that reuses the fd.
func TestReactorFDReuseCannotCrossSessions(t *testing.T) {
	gate := make(chan struct{}, 1)
	rig := newGatedRig(t, gate)
	gate <- struct{}{}
	a := rig.connect(t)
	testutil.Eventually(t, "A parked", 10*time.Second, func() bool { return rig.parked() == 1 })
	rig.mu.Lock()
	aSrv := rig.srv[len(rig.srv)-1]
	rig.mu.Unlock()
	aFD := sysFD(t, aSrv)

	// B's client socket exists before A's fd is freed, so B's accepted socket takes it.
	bConn := rig.dial(t)
	_ = aSrv.Close() // the kernel drops the registration; the reactor entry stays
	gate <- struct{}{}
	b := rig.handshake(t, bConn)
	rig.mu.Lock()
	bSrv := rig.srv[len(rig.srv)-1]
	rig.mu.Unlock()
	if got := sysFD(t, bSrv); got != aFD {
		t.Logf("fd %d not reused (B got %d); B must still work and A stay untouched", aFD, got)
	}
	testutil.Eventually(t, "B parked", 10*time.Second, func() bool { return rig.parked() >= 2 })
	for range 5 {
		if err := b.roundTrip(false); err != nil {
			t.Fatalf("B: %v", err)
		}
	}
	if rig.ended.Load() != 0 {
		t.Fatal("an event for B resumed A's session")
	}
	// CloseAll still reaches A's stale entry (its fd is gone: no EPOLL_CTL_DEL on a reused fd).
	rig.px.CloseAll()
	_ = a
	testutil.Eventually(t, "all sessions ended", 10*time.Second, func() bool { return rig.ended.Load() == int64(len(rig.srv)) })
	if p := rig.parked(); p != 0 {
		t.Fatalf("%d reactor entries left", p)
	}
}

func sysFD(t *testing.T, c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	_ = rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
