package session

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Admission control: connections that have not finished logging in count against
// MaxClients together with logged-in ones (as PgBouncer counts them against max_client_conn),
// and at most MaxAuthenticating of them exist at once. Logged-in clients are never evicted;
// when they fill MaxClients a new connection is refused with 53300.
//
// When MaxAuthenticating connections are logging in, a new one takes the place of another,
// which is closed: first a login that has stalled (spoken, then nothing for staleLogin), then
// the oldest silent connection (nothing read from it yet), then the oldest login. Clients
// speak first in this protocol and a real client logs in within moments, so a flood of silent
// connections pushes out mostly itself, and connections that stall in the middle of a login
// make room before anyone who is getting on with it. Connections are admitted in the order they
// were accepted (on the accept loop, before their session starts) and leave the silent list
// when their first startup packet has been read.

// staleLogin is how long a login that has spoken may take before it is the first to make room.
const staleLogin = time.Second

// speakGrace is how long a newcomer that finds no room may take to send its first bytes (they
// may trail the handshake by a moment) before it joins as a silent connection.
const speakGrace = 100 * time.Millisecond

// admissions tracks the connections still logging in, oldest first, silent ones apart.
type admissions struct {
	mu      sync.Mutex
	silent  list.List // of *admission: nothing read from them yet
	spoken  list.List // of *admission: sent bytes, now in startup, TLS or SCRAM
	n       atomic.Int64
	evicted atomic.Int64 // closed to make room for newer ones
	refused atomic.Int64 // refused: MaxClients logged in
	onHold  atomic.Int64 // newcomers given speakGrace before they join
}

// admission is one connection logging in.
type admission struct {
	conn net.Conn
	in   *list.List    // the list it is on; nil once it left
	elem *list.Element //
	at   time.Time     // when it joined that list
	// onHold: it found no room and had not spoken; settle admits it.
	onHold bool
}

func (a *admissions) push(adm *admission, l *list.List) {
	adm.in, adm.elem, adm.at = l, l.PushBack(adm), time.Now()
	a.n.Store(int64(a.silent.Len() + a.spoken.Len()))
}

func (a *admissions) remove(adm *admission) {
	if adm.in != nil {
		adm.in.Remove(adm.elem)
		adm.in, adm.elem = nil, nil
		a.n.Store(int64(a.silent.Len() + a.spoken.Len()))
	}
}

// victim takes the admission that should make room off its list: a stalled login, else the
// oldest silent one, else the oldest login (nil when there is none).
func (a *admissions) victim(now time.Time) *admission {
	if front := a.spoken.Front(); front != nil && now.Sub(front.Value.(*admission).at) >= staleLogin {
		return a.oldest(&a.spoken)
	}
	if v := a.oldest(&a.silent); v != nil {
		return v
	}
	return a.oldest(&a.spoken)
}

// oldest takes the longest-waiting admission off l (nil when empty).
func (a *admissions) oldest(l *list.List) *admission {
	front := l.Front()
	if front == nil {
		return nil
	}
	adm := front.Value.(*admission)
	a.remove(adm)
	return adm
}

// loginRoom is how many connections may be logging in now (-1: no limit), or 0 when MaxClients
// clients are logged in.
func (p *Proxy) loginRoom(rt *Runtime) int64 {
	room := int64(-1)
	if rt.MaxClients > 0 {
		room = max(int64(rt.MaxClients)-p.clients.Load(), 0)
	}
	if rt.MaxAuthenticating > 0 && (room < 0 || int64(rt.MaxAuthenticating) < room) {
		room = int64(rt.MaxAuthenticating)
	}
	return room
}

// admit registers conn as logging in, making room (victim) when MaxAuthenticating (or the room
// MaxClients leaves) is taken. A newcomer that finds no room and has not spoken yet is put on
// hold instead (settle admits it once it speaks or after speakGrace), at most room of them. It
// reports false when MaxClients clients are logged in: the caller answers 53300 and closes conn.
func (p *Proxy) admit(conn net.Conn, rt *Runtime) (*admission, bool) {
	a := &p.admissions
	room := p.loginRoom(rt)
	if room == 0 {
		a.refused.Add(1)
		return nil, false
	}
	adm := &admission{conn: conn}
	full := room > 0 && a.n.Load() >= room
	if !full {
		a.place(adm, false, room)
		return adm, true
	}
	// Under pressure, a newcomer whose first bytes are already here has spoken (one syscall).
	if hasSpoken(conn) {
		a.place(adm, true, room)
		return adm, true
	}
	if a.onHold.Add(1) <= room {
		adm.onHold = true
		return adm, true
	}
	a.onHold.Add(-1)
	a.place(adm, false, room)
	return adm, true
}

// settle admits a connection that was put on hold, once it has spoken or after speakGrace.
// The session calls it before it reads anything. It reports false when MaxClients clients
// logged in meanwhile: the caller refuses the connection.
func (p *Proxy) settle(adm *admission, rt *Runtime) bool {
	if !adm.onHold {
		return true
	}
	spoke := waitSpoken(adm.conn, speakGrace)
	adm.onHold = false
	p.admissions.onHold.Add(-1)
	room := p.loginRoom(rt)
	if room == 0 {
		p.admissions.refused.Add(1)
		return false
	}
	p.admissions.place(adm, spoke, room)
	return true
}

// place puts adm on the spoken or the silent list, first closing connections that make room
// (victim) when room are logging in already.
func (a *admissions) place(adm *admission, spoken bool, room int64) {
	var evict []net.Conn
	a.mu.Lock()
	now := time.Now()
	for room > 0 && a.n.Load() >= room {
		victim := a.victim(now)
		if victim == nil {
			break
		}
		evict = append(evict, victim.conn)
	}
	if spoken {
		a.push(adm, &a.spoken)
	} else {
		a.push(adm, &a.silent)
	}
	a.mu.Unlock()
	for _, c := range evict {
		a.evicted.Add(1)
		_ = c.Close() // its session sees the read fail and ends
	}
}

// spoke records that adm's connection sent a complete startup packet: from now on only a
// connection that has spoken too can take its place.
func (p *Proxy) spoke(adm *admission) {
	a := &p.admissions
	a.mu.Lock()
	if adm.in == &a.silent {
		a.remove(adm)
		a.push(adm, &a.spoken)
	}
	a.mu.Unlock()
}

// admitted ends adm's login phase (logged in, or failed).
func (p *Proxy) admitted(adm *admission) {
	a := &p.admissions
	a.mu.Lock()
	a.remove(adm)
	a.mu.Unlock()
}

// EvictOldestLogin closes the connection logging in that should make room first (a stalled
// login, else the oldest silent one, else the oldest), if any, and reports whether there was
// one. The accept loop calls it when the process runs out of file descriptors, so a new client
// can get one.
func (p *Proxy) EvictOldestLogin() bool {
	a := &p.admissions
	a.mu.Lock()
	victim := a.victim(time.Now())
	a.mu.Unlock()
	if victim == nil {
		return false
	}
	a.evicted.Add(1)
	_ = victim.conn.Close()
	return true
}

// refuseTooMany answers a connection that cannot be admitted, without reading anything from
// it, and closes it.
func refuseTooMany(conn net.Conn) {
	msg, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "53300",
		Message: "sorry, too many clients already"}).Encode(nil)
	_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = conn.Write(msg)
	_ = conn.Close()
}
