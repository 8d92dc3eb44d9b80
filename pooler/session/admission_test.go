package session

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// tcpPair returns the server side of a loopback TCP connection and its client side.
func tcpPair(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// speak sends client's first bytes and waits until server has them (unread).
func speak(t *testing.T, server, client net.Conn) {
	t.Helper()
	if _, err := client.Write([]byte{0, 0, 0, 8}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !hasSpoken(server); {
		if time.Now().After(deadline) {
			t.Fatal("the bytes never arrived")
		}
		runtime.Gosched()
	}
}

// newcomer admits a new connection to p as the session does (admit, then settle: a silent
// newcomer at the cap waits speakGrace first; refuseTooMany when refused) and reports whether
// it was let in. The client side of a refused newcomer must have read 53300.
func newcomer(t *testing.T, p *Proxy, rt *Runtime, ln net.Listener, speaks bool) (*admission, net.Conn, bool) {
	t.Helper()
	server, client := tcpPair(t, ln)
	if speaks {
		speak(t, server, client)
	}
	adm, ok := p.admit(server, rt)
	if ok && !p.settle(adm, rt) {
		ok = false
	}
	if !ok {
		refuseTooMany(server)
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, _ := io.ReadAll(client); !bytes.Contains(got, []byte("53300")) {
			t.Fatalf("a refused newcomer read %q, want 53300", got)
		}
	}
	return adm, server, ok
}

// TestAdmissionEvictsSilentFirst: at the login cap a newcomer replaces a stalled login, else
// the oldest silent one; when every login has spoken and none has stalled the newcomer is
// refused; logged-in clients fill MaxClients and refuse newcomers.
func TestAdmissionEvictsSilentFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &Proxy{}
	rt := &Runtime{MaxClients: 10, MaxAuthenticating: 2}
	admit := func(speaks bool) (*admission, net.Conn) {
		t.Helper()
		adm, server, ok := newcomer(t, p, rt, ln, speaks)
		if !ok {
			t.Fatal("refused while a login could make room")
		}
		return adm, server
	}
	_, silent1 := admit(false)
	spoken1, sp1 := admit(true) // not full yet: silent until its startup packet is read
	p.spoke(spoken1)
	_, silent2 := admit(false)
	if !closed(silent1) || closed(sp1) {
		t.Fatal("a silent newcomer did not replace the oldest silent login")
	}
	_, sp2 := admit(true)
	if !closed(silent2) || closed(sp1) {
		t.Fatal("a speaking newcomer evicted a login that had spoken while a silent one was there")
	}
	// Both logins have spoken and neither has stalled: the next newcomer, silent or not, is
	// refused, and both logins carry on.
	for _, speaks := range []bool{false, true} {
		if _, _, ok := newcomer(t, p, rt, ln, speaks); ok {
			t.Fatalf("a newcomer (speaks: %v) was let in while every login had spoken recently", speaks)
		}
		if closed(sp1) || closed(sp2) {
			t.Fatal("a login that had spoken recently made room")
		}
	}
	if got := p.admissions.refused.Load(); got != 2 {
		t.Fatalf("%d refusals counted, want 2", got)
	}
	// A login that has spoken and then stalled makes room.
	stalled := p.admissions.spoken.Front().Value.(*admission)
	stalled.at = time.Now().Add(-2 * staleLogin)
	_, silent3 := admit(false)
	if !closed(sp1) || closed(sp2) {
		t.Fatal("the stalled login did not make room")
	}
	if got := p.admissions.n.Load(); got != 2 {
		t.Fatalf("%d logins tracked, cap 2", got)
	}
	// A newcomer whose first bytes trail its handshake is held until they come, then joins as
	// one that has spoken.
	server, client := tcpPair(t, ln)
	late, ok := p.admit(server, rt)
	if !ok || !late.onHold {
		t.Fatalf("a silent newcomer at the cap was not held: ok=%v", ok)
	}
	go func() { _, _ = client.Write([]byte{0, 0, 0, 8}) }()
	if !p.settle(late, rt) || late.in != &p.admissions.spoken {
		t.Fatal("a newcomer that spoke within speakGrace did not join the spoken list")
	}
	if !closed(silent3) || closed(sp2) {
		t.Fatal("the silent login should have made room for the one that spoke")
	}
	p.clients.Store(10)
	if _, ok := p.admit(sp2, rt); ok {
		t.Fatal("admitted past MaxClients logged-in clients")
	}
}

// TestAdmissionAtTheLoginCap: who makes room for a newcomer when MaxAuthenticating logins are
// in progress, by what those logins have done.
func TestAdmissionAtTheLoginCap(t *testing.T) {
	type login string
	const (
		silent  login = "silent"  // nothing received
		unread  login = "unread"  // its first bytes arrived; its session has not read them yet
		spoken  login = "spoken"  // its startup packet was read (spoke)
		stalled login = "stalled" // spoken staleLogin ago or more
	)
	cases := []struct {
		name    string
		logins  []login // oldest first
		speaks  bool    // the newcomer's first bytes are there when it is accepted
		evicted int     // index in logins of the login that makes room; -1: the newcomer is refused
	}{
		{"spoken and fresh: a speaking newcomer is refused", []login{spoken, spoken}, true, -1},
		{"spoken and fresh: a silent newcomer is refused after its hold", []login{spoken, spoken}, false, -1},
		{"spoken and stale: the stalled one makes room", []login{stalled, spoken}, true, 0},
		{"a stalled login goes before a silent one", []login{stalled, silent}, false, 0},
		{"silent present: it makes room for a speaking newcomer", []login{spoken, silent}, true, 1},
		{"silent present: the oldest silent one makes room", []login{silent, spoken, silent}, false, 0},
		{"bytes arrived but unread count as spoken", []login{unread, spoken}, true, -1},
		{"an unread one is passed over for a silent one", []login{unread, silent}, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			p := &Proxy{}
			rt := &Runtime{MaxClients: 10, MaxAuthenticating: len(tc.logins)}
			conns := make([]net.Conn, len(tc.logins))
			for i, l := range tc.logins {
				server, client := tcpPair(t, ln)
				adm, ok := p.admit(server, rt) // below the cap: joins as silent at once
				if !ok || adm.onHold {
					t.Fatal("not admitted at once below the cap")
				}
				conns[i] = server
				switch l {
				case unread:
					speak(t, server, client)
				case spoken, stalled:
					p.spoke(adm)
				}
				if l == stalled {
					adm.at = time.Now().Add(-2 * staleLogin)
				}
			}
			if _, _, ok := newcomer(t, p, rt, ln, tc.speaks); ok != (tc.evicted >= 0) {
				t.Fatalf("newcomer let in: %v, want %v", ok, tc.evicted >= 0)
			}
			for i, c := range conns {
				if closed(c) != (i == tc.evicted) {
					t.Fatalf("login %d (%v) closed: %v, want only login %d closed", i, tc.logins[i], closed(c), tc.evicted)
				}
			}
			wantRefused, wantEvicted := int64(0), int64(1)
			if tc.evicted < 0 {
				wantRefused, wantEvicted = 1, 0
			}
			if r, e := p.admissions.refused.Load(), p.admissions.evicted.Load(); r != wantRefused || e != wantEvicted {
				t.Fatalf("counted %d refused and %d evicted, want %d and %d", r, e, wantRefused, wantEvicted)
			}
			if n := p.admissions.n.Load(); n != int64(len(tc.logins)) {
				t.Fatalf("%d logins tracked, cap %d", n, len(tc.logins))
			}
		})
	}
}
