package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
)

// epollSet stands for the relay loop's epoll set: Sock.Detach registers sockets in it.
type epollSet struct {
	fd                  int
	added, removed      atomic.Int32
	lastAdded, lastGone atomic.Int32
}

func newEpollSet(t *testing.T) *epollSet {
	t.Helper()
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return &epollSet{fd: fd}
}

func (e *epollSet) register(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	e.added.Add(1)
	e.lastAdded.Store(int32(fd))
	return nil
}

func (e *epollSet) unregister(fd int) {
	_ = unix.EpollCtl(e.fd, unix.EPOLL_CTL_DEL, fd, nil)
	e.removed.Add(1)
	e.lastGone.Store(int32(fd))
}

// detach takes conn (a *Sock) out of Go's netpoller into the set.
func (e *epollSet) detach(t *testing.T, conn net.Conn) int {
	t.Helper()
	s, ok := conn.(*Sock)
	if !ok {
		t.Fatalf("socket is a %T, want *Sock", conn)
	}
	fd, err := s.Detach(e.register, e.unregister)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// wait returns the descriptors with events within timeout (0: those ready now).
func (e *epollSet) wait(t *testing.T, timeout time.Duration) []int32 {
	t.Helper()
	events := make([]unix.EpollEvent, 8)
	for {
		n, err := unix.EpollWait(e.fd, events, int(timeout.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fds := make([]int32, n)
		for i := range n {
			fds[i] = events[i].Fd
		}
		return fds
	}
}

// sockPair dials a listener through DialSock: the client's *Sock and the server's end.
func sockPair(t *testing.T) (*Sock, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var d net.Dialer
	c, err := DialSock(d.DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	s, ok := c.(*Sock)
	if !ok {
		t.Fatalf("DialSock returned a %T", c)
	}
	return s, peer
}

func readExactly(t *testing.T, r io.Reader, want string) {
	t.Helper()
	b := make([]byte, len(want))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("read %q, want %q", b, want)
	}
}

// A detached socket is watched by the caller's epoll set alone and read with raw calls; the
// next use through net.Conn puts it back in Go's netpoller (out of the set) with nothing lost.
func TestSockDetachAndUseAgain(t *testing.T) {
	s, peer := sockPair(t)
	set := newEpollSet(t)
	fd := set.detach(t, s)
	if again := set.detach(t, s); again != fd || set.added.Load() != 1 {
		t.Fatalf("detaching twice: fd %d then %d, %d registrations", fd, again, set.added.Load())
	}
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := set.wait(t, 10*time.Second); len(got) != 1 || got[0] != int32(fd) {
		t.Fatalf("epoll events for %v, want fd %d", got, fd)
	}
	if revents, known := sockpoll.Pending(s, sockpoll.In); !known || revents&sockpoll.In == 0 {
		t.Fatalf("Pending on the detached socket: %#x known %v", revents, known)
	}
	readExactly(t, fdReader(fd), "pi")
	// The rest is read through net.Conn: the socket goes back to the netpoller.
	readExactly(t, s, "ng")
	if set.removed.Load() != 1 || set.lastGone.Load() != int32(fd) {
		t.Fatalf("%d unregistrations (last fd %d), want fd %d once", set.removed.Load(), set.lastGone.Load(), fd)
	}
	if _, err := peer.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, s, "more")
	if got := set.wait(t, 0); len(got) != 0 {
		t.Fatalf("the set still reports %v after the socket went back", got)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, peer, "pong")
	// Detached again, under another descriptor number or the same: the set has it again.
	set.detach(t, s)
	if set.added.Load() != 2 {
		t.Fatalf("%d registrations, want 2", set.added.Load())
	}
}

// Closing a detached socket takes it out of the set and closes the connection.
func TestSockCloseDetached(t *testing.T) {
	s, peer := sockPair(t)
	set := newEpollSet(t)
	fd := set.detach(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if set.removed.Load() != 1 || set.lastGone.Load() != int32(fd) {
		t.Fatalf("%d unregistrations", set.removed.Load())
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("peer read %d, %v; want EOF", n, err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("write on a closed socket succeeded")
	}
	if _, err := s.Detach(set.register, set.unregister); err == nil {
		t.Fatal("detached a closed socket")
	}
	if err := s.Close(); err == nil {
		t.Fatal("closed twice without an error")
	}
}

type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(f), p)
		if err == syscall.EINTR {
			continue
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return n, err
	}
}

// A pool connection whose socket the relay loop took is used through pgconn again (the socket
// comes back transparently), and counted both ways in Stats.
func TestPoolConnDetachedThenUsedByPgconn(t *testing.T) {
	p := newPool(t, 1, 5*time.Second)
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set := newEpollSet(t)
	set.detach(t, c.Socket())
	c.Release()
	c, err = p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("pgconn on a connection whose socket was detached: %v", err)
	}
	if st := p.Stats(); st.SocketsDetached != 1 || st.SocketsAttached != 1 {
		t.Fatalf("stats %+v, want one detach and one attach", st)
	}
	set.detach(t, c.Socket())
	c.Destroy() // pgconn puts it back to write Terminate, then closes it: the set forgets it
	if set.removed.Load() != 2 {
		t.Fatalf("%d unregistrations, want 2", set.removed.Load())
	}
}

// The pool's check of an idle connection works on a detached socket too.
func TestCheckOutReplacesTerminatedDetachedConnection(t *testing.T) {
	set := newEpollSet(t)
	checkOutReplacesTerminated(t, func(c *Conn) { set.detach(t, c.Socket()) })
}
