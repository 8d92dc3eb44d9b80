package session

import (
	"errors"
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

// TestAdmissionEvictsSilentFirst: at the login cap a newcomer replaces the oldest silent login,
// and only when there is none the oldest that has spoken; logged-in clients fill MaxClients and
// refuse newcomers.
func TestAdmissionEvictsSilentFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &Proxy{}
	rt := &Runtime{MaxClients: 10, MaxAuthenticating: 2}
	admit := func(speak bool) (*admission, net.Conn) {
		server, client := tcpPair(t, ln)
		if speak {
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
		adm, ok := p.admit(server, rt)
		if !ok || !p.settle(adm, rt) { // a silent newcomer at the cap waits speakGrace first
			t.Fatal("refused below MaxClients")
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
	// Both logins have spoken: the next newcomer, silent or not, replaces the oldest.
	_, silent3 := admit(false)
	if !closed(sp1) || closed(sp2) {
		t.Fatal("no silent login left: the oldest login should have made room")
	}
	admit(true)
	if !closed(silent3) || closed(sp2) {
		t.Fatal("the silent login should have gone before the one that spoke")
	}
	if got := p.admissions.n.Load(); got != 2 {
		t.Fatalf("%d logins tracked, cap 2", got)
	}
	// A login that has spoken and then stalled makes room before a silent one.
	_, silent4 := admit(false) // replaces sp2, the oldest login (no silent one is left)
	if !closed(sp2) {
		t.Fatal("the oldest login did not make room")
	}
	stalled := p.admissions.spoken.Front().Value.(*admission)
	stalled.at = time.Now().Add(-2 * staleLogin)
	admit(false)
	if !closed(stalled.conn) || closed(silent4) {
		t.Fatal("a stalled login should make room before a silent one")
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
	p.clients.Store(10)
	if _, ok := p.admit(sp2, rt); ok {
		t.Fatal("admitted past MaxClients logged-in clients")
	}
}
