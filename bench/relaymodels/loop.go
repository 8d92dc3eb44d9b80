//go:build linux

package main

import (
	"errors"
	"log"
	"net"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// serveLoops: n event loops, each on a locked OS thread waiting in its own epoll set. Clients
// are dealt to the loops in turn once they are greeted (on a goroutine, as edgepool's startup
// would be), upstream connections are split between them; from then on a loop reads, writes
// and hands out connections for its clients without parking a goroutine or taking a lock.
func serveLoops(ln net.Listener, conns []net.Conn, n int) error {
	loops := make([]*eventLoop, n)
	for i := range loops {
		l, err := newEventLoop()
		if err != nil {
			return err
		}
		loops[i] = l
	}
	for i, c := range conns {
		fd, err := takeSocket(c)
		if err != nil {
			return err
		}
		l := loops[i%n]
		u := &upConn{fd: fd}
		l.upstream[fd] = u
		l.idle = append(l.idle, u)
		if err := l.watch(fd); err != nil {
			return err
		}
	}
	for _, l := range loops {
		go l.run()
	}
	for next := 0; ; next++ {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go loops[next%n].adopt(c)
	}
}

type eventLoop struct {
	epfd, wakefd int
	incoming     chan int // greeted client sockets
	clients      map[int]*loopClient
	upstream     map[int]*upConn
	idle         []*upConn     // upstream connections nobody holds
	waiting      []*loopClient // clients with a request and no connection, in arrival order
	answer       []byte        // read buffer for upstream answers
}

type loopClient struct {
	fd       int // -1 once closed
	in       []byte
	buffered int
	srv      *upConn
	owed     int // ReadyForQuery messages the upstream still owes this client
	queued   bool
}

type upConn struct {
	fd     int
	client *loopClient
	sc     answerScanner
}

func newEventLoop() (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &eventLoop{epfd: epfd, wakefd: wakefd, incoming: make(chan int, 4096),
		clients: map[int]*loopClient{}, upstream: map[int]*upConn{}, answer: make([]byte, 64<<10)}
	if err := l.watch(wakefd); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *eventLoop) watch(fd int) error {
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
}

// adopt greets a client on the calling goroutine, then hands its socket to the loop.
func (l *eventLoop) adopt(c net.Conn) {
	if greet(c) != nil {
		_ = c.Close()
		return
	}
	fd, err := takeSocket(c)
	if err != nil {
		return
	}
	l.incoming <- fd
	one := [8]byte{1}
	if _, errno := rawWrite(l.wakefd, one[:]); errno != 0 {
		log.Printf("relaymodels: wake loop: %v", errno)
	}
}

func (l *eventLoop) run() {
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			log.Fatalf("relaymodels: epoll_wait: %v", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.wakefd:
				l.takeIncoming()
			case l.clients[fd] != nil:
				l.clientReadable(l.clients[fd])
			case l.upstream[fd] != nil:
				l.upstreamReadable(l.upstream[fd])
			}
		}
	}
}

func (l *eventLoop) takeIncoming() {
	var b [8]byte
	_, _ = rawRead(l.wakefd, b[:])
	for {
		select {
		case fd := <-l.incoming:
			l.clients[fd] = &loopClient{fd: fd, in: make([]byte, 8192)}
			if err := l.watch(fd); err != nil {
				l.closeClient(l.clients[fd])
			}
		default:
			return
		}
	}
}

// clientReadable: read what the client sent; send its complete requests upstream, borrowing a
// connection (or queueing for one) when it holds none.
func (l *eventLoop) clientReadable(c *loopClient) {
	n, errno := rawRead(c.fd, c.in[c.buffered:])
	if errno == unix.EAGAIN {
		return
	}
	if errno != 0 || n == 0 {
		l.closeClient(c)
		return
	}
	c.buffered += n
	k, owed := requests(c.in[:c.buffered])
	if k == 0 {
		if c.buffered == len(c.in) {
			l.closeClient(c) // a message larger than the lab handles
		}
		return
	}
	if c.in[0] == 'X' {
		l.closeClient(c)
		return
	}
	if c.srv != nil {
		l.send(c, k, owed)
		return
	}
	if len(l.idle) > 0 {
		u := l.idle[len(l.idle)-1]
		l.idle = l.idle[:len(l.idle)-1]
		c.srv, u.client = u, c
		l.send(c, k, owed)
		return
	}
	if !c.queued {
		c.queued = true
		l.waiting = append(l.waiting, c)
	}
}

// send writes the client's first k bytes (complete requests, owed answers between them) to its
// upstream connection.
func (l *eventLoop) send(c *loopClient, k, owed int) {
	if !writeAll(c.srv.fd, c.in[:k]) {
		log.Fatal("relaymodels: upstream write failed") // nothing left to measure
	}
	c.owed += owed
	c.buffered = copy(c.in, c.in[k:c.buffered])
}

// upstreamReadable relays what the upstream answered and, when the transaction is over, gives
// the connection to the next waiting client.
func (l *eventLoop) upstreamReadable(u *upConn) {
	n, errno := rawRead(u.fd, l.answer)
	if errno == unix.EAGAIN {
		return
	}
	if errno != 0 || n == 0 {
		log.Fatal("relaymodels: upstream closed")
	}
	c := u.client
	if c == nil {
		log.Fatal("relaymodels: upstream spoke while idle")
	}
	c.owed -= u.sc.feed(l.answer[:n])
	if c.fd >= 0 && !writeAll(c.fd, l.answer[:n]) {
		l.closeClient(c)
	}
	if c.owed > 0 {
		return
	}
	if u.sc.status != 'I' {
		if c.fd < 0 { // gone inside a transaction: the lab does not replace the connection
			delete(l.upstream, u.fd)
			_ = unix.Close(u.fd)
		}
		return
	}
	c.srv, u.client = nil, nil
	for len(l.waiting) > 0 {
		w := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		w.queued = false
		if w.fd >= 0 {
			w.srv, u.client = u, w
			k, owed := requests(w.in[:w.buffered])
			l.send(w, k, owed)
			return
		}
	}
	l.idle = append(l.idle, u)
}

// closeClient closes a client's socket; a transaction still owed answers finishes upstream.
func (l *eventLoop) closeClient(c *loopClient) {
	if c.fd < 0 {
		return
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	delete(l.clients, c.fd)
	_ = unix.Close(c.fd)
	c.fd = -1
	if u := c.srv; u != nil && c.owed == 0 && u.sc.status != 'I' {
		delete(l.upstream, u.fd)
		_ = unix.Close(u.fd)
	}
}

// takeSocket duplicates a connection's descriptor out of Go's netpoller (closing the original)
// and makes it non-blocking.
func takeSocket(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	_ = c.Close()
	if dupErr != nil {
		return -1, dupErr
	}
	return fd, unix.SetNonblock(fd, true)
}

// rawRead and rawWrite are read(2) and write(2) on non-blocking descriptors, which never block,
// so they skip the runtime's system-call bookkeeping (as the netpoller's own reads do not).
func rawRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), errno
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), errno
}

// writeAll writes p, waiting in poll(2) when the socket is full: the lab's answers are small,
// so this blocks the loop only when a client stops reading, which pgbench never does.
func writeAll(fd int, p []byte) bool {
	for len(p) > 0 {
		n, errno := rawWrite(fd, p)
		switch errno {
		case 0:
			p = p[n:]
		case unix.EAGAIN:
			if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, -1); err != nil && !errors.Is(err, unix.EINTR) {
				return false
			}
		default:
			return false
		}
	}
	return true
}
