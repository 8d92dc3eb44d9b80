package session

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testutil"
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

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
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

// send writes b from client and waits until server has it (unread).
func send(t *testing.T, server, client net.Conn, b []byte) {
	t.Helper()
	if _, err := client.Write(b); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the bytes to arrive", 5*time.Second, func() bool {
		var buf [maxCancelPacket]byte
		n := peek(server, buf[:])
		return n < 0 || n >= len(b)
	})
}

// speak sends client's first bytes (the start of a startup packet) and waits until server has
// them.
func speak(t *testing.T, server, client net.Conn) { send(t, server, client, []byte{0, 0, 0, 8}) }

// arrival is a newcomer going through admission as a session does: admit on the accept loop,
// then settle on its own goroutine (a newcomer on hold or in the waiting line blocks there).
type arrival struct {
	adm            *admission
	held           bool // admit put it on hold
	server, client net.Conn
	result         chan bool // let in; false: refused, and its client read 53300
}

func arrive(t *testing.T, p *Proxy, rt *Runtime, ln net.Listener, first []byte) *arrival {
	t.Helper()
	a := &arrival{result: make(chan bool, 1)}
	a.server, a.client = tcpPair(t, ln)
	if first != nil {
		send(t, a.server, a.client, first)
	}
	adm, ok := p.admit(a.server, rt)
	a.adm = adm
	if !ok {
		refuseTooMany(a.server)
		a.result <- false
		return a
	}
	a.held = adm.onHold
	go func() {
		ok := p.settle(adm, rt, time.Now().Add(time.Minute))
		if !ok {
			refuseTooMany(a.server)
		}
		a.result <- ok
	}()
	return a
}

// outcome waits for settle and reports whether the newcomer was let in; a refused one must have
// been told 53300.
func (a *arrival) outcome(t *testing.T) bool {
	t.Helper()
	var ok bool
	select {
	case ok = <-a.result:
	case <-time.After(5 * time.Second):
		t.Fatal("the newcomer was neither let in nor refused")
	}
	if !ok {
		_ = a.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, _ := io.ReadAll(a.client); !bytes.Contains(got, []byte("53300")) {
			t.Fatalf("a refused newcomer read %q, want 53300", got)
		}
	}
	return ok
}

// on reports whether adm is on list l now.
func (p *Proxy) on(adm *admission, l *list.List) bool {
	p.admissions.mu.Lock()
	defer p.admissions.mu.Unlock()
	return adm != nil && adm.in == l
}

// waitsForAPlace waits until a's newcomer is in the waiting line.
func (a *arrival) waitsForAPlace(t *testing.T, p *Proxy) {
	t.Helper()
	testutil.Eventually(t, "the newcomer waiting for a place", 5*time.Second, func() bool {
		return p.on(a.adm, &p.admissions.waiting)
	})
}

// login is what a login in progress has done when a newcomer comes.
type login string

const (
	silent   login = "silent"   // nothing received, accepted speakGrace ago or more
	young    login = "young"    // nothing received, accepted just now when there was room
	unread   login = "unread"   // its first bytes arrived; its session has not read them yet
	started  login = "started"  // its startup packet was read just now (spoke)
	late     login = "late"     // started answerGrace ago or more, no answer since
	answered login = "answered" // sent a message of the auth exchange just now
	stalled  login = "stalled"  // answered staleLogin ago or more, nothing since
	verified login = "verified" // proved its key (long ago)
)

// atTheCap returns a proxy whose login room (MaxAuthenticating, MaxClients 10) is exactly filled
// by one connection for each of logins (oldest first), set up as the login says, with the
// listener newcomers come through.
func atTheCap(t *testing.T, logins ...login) (*Proxy, *Runtime, net.Listener, []*admission, []net.Conn) {
	t.Helper()
	p, rt, ln := &Proxy{}, &Runtime{MaxClients: 10, MaxAuthenticating: len(logins)}, listen(t)
	adms := make([]*admission, len(logins))
	conns := make([]net.Conn, len(logins))
	for i, l := range logins {
		server, client := tcpPair(t, ln)
		adm, ok := p.admit(server, rt) // below the cap: joins as silent at once
		if !ok || adm.onHold || !p.on(adm, &p.admissions.silent) {
			t.Fatal("not admitted as silent at once below the cap")
		}
		adms[i], conns[i] = adm, server
		now := time.Now()
		adm.accepted = now.Add(-2 * speakGrace)
		if l == young {
			adm.accepted = now.Add(time.Minute) // just now, without racing the test against speakGrace
		}
		switch l {
		case unread:
			speak(t, server, client)
		case started, late:
			p.spoke(adm)
		case answered, stalled:
			p.spoke(adm)
			p.answered(adm)
		case verified:
			p.spoke(adm)
			p.answered(adm)
			p.verified(adm)
		}
		switch l {
		case late:
			adm.at = now.Add(-2 * answerGrace)
		case stalled:
			adm.at = now.Add(-2 * staleLogin)
		case verified:
			adm.at = now.Add(-10 * staleLogin)
		}
	}
	return p, rt, ln, adms, conns
}

// TestAdmissionAtTheLoginCap: what happens to a newcomer when MaxAuthenticating logins are in
// progress, by what those logins have done: one of them makes room (and is closed), or the
// newcomer waits for a place, or (silent still after its hold) it is refused.
func TestAdmissionAtTheLoginCap(t *testing.T) {
	const waits, refused = -1, -2
	cases := []struct {
		name   string
		logins []login // oldest first
		speaks bool    // the newcomer's first bytes are there when it is accepted
		flood  bool    // room silent newcomers are on hold already (it cannot be held)
		then   int     // index in logins of the login that makes room, or waits, or refused
	}{
		{"answered and fresh: a speaking newcomer waits", []login{answered, answered}, true, false, waits},
		{"answered and fresh: a silent newcomer is refused after its hold", []login{answered, answered}, false, false, refused},
		{"an answered login that stalled makes room", []login{stalled, answered}, true, false, 0},
		{"a stalled login goes before a silent one", []login{stalled, silent}, false, false, 0},
		{"a silent login makes room for a speaking newcomer", []login{answered, silent}, true, false, 1},
		{"the oldest silent login makes room", []login{silent, answered, silent}, false, false, 0},
		{"a silent login that found room is spared for its speakGrace", []login{young, answered}, true, false, waits},
		{"a spared login is spared by a silent newcomer after its hold too", []login{young, answered}, false, false, refused},
		{"in a silent flood a silent newcomer pushes out the oldest silent login, spared or not", []login{young, answered}, false, true, 0},
		{"bytes arrived but unread: started, spared", []login{unread, answered}, true, false, waits},
		{"an unread login is passed over for a silent one", []login{unread, silent}, true, false, 1},
		{"started within answerGrace: spared", []login{started, answered}, true, false, waits},
		{"started and no answer within answerGrace: makes room", []login{late, answered}, true, false, 0},
		{"a silent login goes before a late one", []login{late, silent}, true, false, 1},
		{"a late login goes before a spared silent one", []login{young, late}, false, false, 1},
		{"a verified login is never pushed out", []login{verified, answered}, true, false, waits},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, rt, ln, adms, conns := atTheCap(t, tc.logins...)
			var first []byte
			if tc.speaks {
				first = []byte{0, 0, 0, 8}
			}
			if tc.flood {
				p.admissions.onHold.Store(int64(len(tc.logins)))
			}
			n := arrive(t, p, rt, ln, first)
			if tc.then == waits {
				n.waitsForAPlace(t, p)
			} else if ok := n.outcome(t); ok != (tc.then >= 0) {
				t.Fatalf("newcomer let in: %v, want %v", ok, tc.then >= 0)
			}
			for i, c := range conns {
				if closed(c) != (i == tc.then) {
					t.Fatalf("login %d (%v) closed: %v, want only login %d closed", i, tc.logins[i], closed(c), tc.then)
				}
			}
			wantRefused, wantEvicted := int64(0), int64(1)
			switch tc.then {
			case waits:
				wantEvicted = 0
			case refused:
				wantRefused, wantEvicted = 1, 0
			}
			if r, e := p.admissions.refused.Load(), p.admissions.evicted.Load(); r != wantRefused || e != wantEvicted {
				t.Fatalf("counted %d refused and %d evicted, want %d and %d", r, e, wantRefused, wantEvicted)
			}
			if got := p.admissions.n.Load(); got != int64(len(tc.logins)) {
				t.Fatalf("%d logins tracked, cap %d", got, len(tc.logins))
			}
			if tc.then != waits {
				return
			}
			// The newest login leaves (logged in or failed): the newcomer takes its place.
			p.admitted(adms[len(adms)-1])
			if !n.outcome(t) || !p.on(n.adm, &p.admissions.started) {
				t.Fatal("the waiting newcomer did not take the place that was freed")
			}
		})
	}
}

// TestAdmissionWaitingLine: a newcomer waiting for a place takes that of a started login once
// its answerGrace is over; the line is in the order the newcomers were accepted, the newest
// takes a place first, and at most room wait (the one accepted first is refused, even when it
// joins the line last, after its hold); a waiter is refused after staleLogin without a place,
// and when MaxClients clients have logged in meanwhile.
func TestAdmissionWaitingLine(t *testing.T) {
	p, rt, ln, adms, conns := atTheCap(t, started)
	adms[0].at = time.Now().Add(-answerGrace / 2)
	first := []byte{0, 0, 0, 8}
	waiter := arrive(t, p, rt, ln, first)
	waiter.waitsForAPlace(t, p)
	// Let in (not refused at staleLogin): it looked again when the started login's grace ended.
	if !waiter.outcome(t) || !closed(conns[0]) {
		t.Fatal("the started login did not make room once its answerGrace was over")
	}

	p.answered(waiter.adm)
	p.verified(waiter.adm) // the room is now one login that nobody may push out
	older := arrive(t, p, rt, ln, first)
	older.waitsForAPlace(t, p)
	newer := arrive(t, p, rt, ln, first)
	newer.waitsForAPlace(t, p)
	if older.outcome(t) {
		t.Fatal("the newcomer accepted first was let in instead of refused")
	}
	start := time.Now()
	if newer.outcome(t) {
		t.Fatal("a newcomer was let in while the only login was verified")
	}
	if waited := time.Since(start); waited < staleLogin/2 {
		t.Fatalf("the newcomer was refused after %v, want about staleLogin", waited)
	}
	if closed(waiter.server) {
		t.Fatal("a waiting newcomer made a verified login leave")
	}

	late := arrive(t, p, rt, ln, first)
	late.waitsForAPlace(t, p)
	p.clients.Store(10) // MaxClients logged in meanwhile
	p.admitted(waiter.adm)
	if late.outcome(t) {
		t.Fatal("a waiting newcomer was let in past MaxClients")
	}
	if got, want := p.admissions.refused.Load(), int64(3); got != want {
		t.Fatalf("%d refusals counted, want %d", got, want)
	}
	if got := p.admissions.waiters.Load(); got != 0 {
		t.Fatalf("%d newcomers still counted waiting", got)
	}
}

// TestAdmissionWaitingLineOrder: the newest newcomer in the line takes the first place that
// comes free; one held for its first bytes that joins a full line after newer ones did is the
// one refused.
func TestAdmissionWaitingLineOrder(t *testing.T) {
	p, rt, ln, adms, _ := atTheCap(t, verified, verified)
	held := arrive(t, p, rt, ln, nil)
	if !held.held {
		t.Fatal("a silent newcomer at the cap was not held")
	}
	w1 := arrive(t, p, rt, ln, []byte{0, 0, 0, 8})
	w1.waitsForAPlace(t, p)
	w2 := arrive(t, p, rt, ln, []byte{0, 0, 0, 8})
	w2.waitsForAPlace(t, p)
	if _, err := held.client.Write([]byte{0, 0, 0, 8}); err != nil {
		t.Fatal(err)
	}
	if held.outcome(t) {
		t.Fatal("the newcomer accepted first joined a full line instead of being refused")
	}
	p.admitted(adms[1])
	if !w2.outcome(t) {
		t.Fatal("the newest waiting newcomer did not take the place")
	}
	if !p.on(w1.adm, &p.admissions.waiting) {
		t.Fatal("the older waiting newcomer left the line")
	}
	p.admitted(adms[0])
	if !w1.outcome(t) {
		t.Fatal("the older newcomer did not take the next place")
	}
}

// TestAdmissionCancelRequestTakesNoPlace: at the cap, a connection whose first packet is a whole
// CancelRequest (pgx's after a failed login has no key) is let in at once on no list, and nobody
// makes room for it; a partial one is a newcomer like any other.
func TestAdmissionCancelRequestTakesNoPlace(t *testing.T) {
	cancelRequest := func(key []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(12+len(key)))
		b = binary.BigEndian.AppendUint32(b, codeCancel)
		b = binary.BigEndian.AppendUint32(b, 1234)
		return append(b, key...)
	}
	p, rt, ln, _, conns := atTheCap(t, late)
	for _, first := range [][]byte{cancelRequest(nil), cancelRequest([]byte{1, 2, 3, 4}), cancelRequest(make([]byte, 32))} {
		c := arrive(t, p, rt, ln, first)
		if !c.outcome(t) || c.adm.in != nil {
			t.Fatalf("a %d-byte CancelRequest was not let in at once without a place", len(first))
		}
	}
	if closed(conns[0]) || p.admissions.evicted.Load() != 0 {
		t.Fatal("a login made room for a CancelRequest")
	}
	partial := arrive(t, p, rt, ln, cancelRequest([]byte{1, 2, 3, 4})[:12])
	if !partial.outcome(t) || !closed(conns[0]) {
		t.Fatal("a partial CancelRequest was not admitted as a login (the late one making room)")
	}
}

// TestAdmissionHoldsNewcomersForTheirFirstBytes: a silent newcomer at the cap is held until its
// first bytes come (then it counts as started, and a silent login makes room for it); logged-in
// clients that fill MaxClients refuse newcomers at once.
func TestAdmissionHoldsNewcomersForTheirFirstBytes(t *testing.T) {
	p, rt, ln, _, conns := atTheCap(t, silent, answered)
	held := arrive(t, p, rt, ln, nil)
	if !held.held {
		t.Fatal("a silent newcomer at the cap was not held")
	}
	go func() { _, _ = held.client.Write([]byte{0, 0, 0, 8}) }()
	if !held.outcome(t) || !p.on(held.adm, &p.admissions.started) {
		t.Fatal("a newcomer that spoke within speakGrace did not join as started")
	}
	if !closed(conns[0]) || closed(conns[1]) {
		t.Fatal("the silent login should have made room for the one that spoke")
	}
	p.clients.Store(10)
	if full := arrive(t, p, rt, ln, []byte{0, 0, 0, 8}); full.adm != nil || full.outcome(t) {
		t.Fatal("admitted past MaxClients logged-in clients")
	}
}

// TestEvictOldestLoginOutOfDescriptors: out of file descriptors, the accept loop frees one even
// when no newcomer may push anyone out: first a newcomer waiting for a place (refused), then the
// oldest login.
func TestEvictOldestLoginOutOfDescriptors(t *testing.T) {
	p, rt, ln, _, conns := atTheCap(t, verified, answered)
	waiter := arrive(t, p, rt, ln, []byte{0, 0, 0, 8})
	waiter.waitsForAPlace(t, p)
	if !p.EvictOldestLogin() || waiter.outcome(t) || closed(conns[0]) || closed(conns[1]) {
		t.Fatal("the waiting newcomer was not the first to go")
	}
	if !p.EvictOldestLogin() || !closed(conns[1]) || closed(conns[0]) {
		t.Fatal("the answered login did not go before the verified one")
	}
	if !p.EvictOldestLogin() || !closed(conns[0]) || p.EvictOldestLogin() {
		t.Fatal("the verified login did not go last")
	}
}
