//go:build linux

package session

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair returns two connected non-blocking stream sockets.
func socketPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fds[0]); _ = unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// The relay loop's client socket never blocks: an empty read says so, a write the socket cannot
// take is kept (in order) for the goroutine that takes over, and a closed peer reads as EOF.
func TestLoopConnNeverBlocks(t *testing.T) {
	a, b := socketPair(t)
	c := &loopConn{fd: a}
	buf := make([]byte, 64)
	if _, err := c.Read(buf); !errors.Is(err, errWouldBlock) {
		t.Fatalf("read of an empty socket: %v, want errWouldBlock", err)
	}
	if !c.drained {
		t.Fatal("an empty read leaves the socket drained")
	}

	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	written := 0
	for len(c.pending) == 0 {
		n, err := c.Write(chunk)
		if err != nil || n != len(chunk) {
			t.Fatalf("write: %d, %v; want the whole chunk taken", n, err)
		}
		written += n
		if written > 64<<20 {
			t.Fatal("the socket never filled up")
		}
	}
	kept := len(c.pending)
	if n, err := c.Write([]byte("tail")); n != 4 || err != nil {
		t.Fatalf("write behind pending bytes: %d, %v", n, err)
	}
	if len(c.pending) != kept+4 || !bytes.HasSuffix(c.pending, []byte("tail")) {
		t.Fatal("a write behind pending bytes must queue after them, not jump ahead")
	}

	if _, err := unix.Write(b, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" || !c.drained {
		t.Fatalf("read: %q, %v, drained %v", buf[:n], err, c.drained)
	}
	_ = unix.Shutdown(b, unix.SHUT_WR)
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
}

func TestFdReaderReportsDrained(t *testing.T) {
	a, b := socketPair(t)
	f := &fdReader{fd: a}
	if _, err := unix.Write(b, bytes.Repeat([]byte{'y'}, 100)); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 60)
	if n, err := f.Read(small); n != 60 || err != nil || f.drained {
		t.Fatalf("first read: %d, %v, drained %v; want 60 bytes and more waiting", n, err, f.drained)
	}
	if n, err := f.Read(small); n != 40 || err != nil || !f.drained {
		t.Fatalf("second read: %d, %v, drained %v; want the last 40 bytes, drained", n, err, f.drained)
	}
	if _, err := f.Read(small); !errors.Is(err, errWouldBlock) {
		t.Fatalf("third read: %v, want errWouldBlock", err)
	}
}
