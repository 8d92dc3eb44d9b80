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
// When the logins in progress fill that room (MaxAuthenticating, or what MaxClients leaves),
// a newcomer takes the place of one of them, which is closed: first a login that has stalled
// (spoke staleLogin ago or more and has not finished), else the oldest silent connection
// (nothing received from it yet). When every login in progress has spoken and none has stalled,
// nobody is closed: the newcomer is refused with 53300 instead. Those logins are the ones
// closest to finishing; evicting the oldest of them for each newcomer let a steady burst of
// valid clients push every login out before it finished, and nobody got in. The price:
// connections that send a startup packet and then stall keep newcomers out for staleLogin.
//
// Clients speak first in this protocol and a real client logs in within moments, so a flood of
// silent connections pushes out mostly itself, and connections that stall in the middle of a
// login make room before anyone who is getting on with it. A newcomer that finds no room and
// has not spoken yet is held for speakGrace first (its first bytes may trail the handshake);
// it then joins, or is refused, by the same rule. Connections are admitted in the order they
// were accepted (on the accept loop, before their session starts) and leave the silent list
// when their first startup packet has been read, or when their first bytes are seen to have
// arrived while looking for one to make room.

// staleLogin is how long a login that has spoken may take before it is the first to make room;
// until then no newcomer takes its place.
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
	refused atomic.Int64 // refused: MaxClients logged in, or every login in progress spoke and none stalled
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
// oldest silent one. It returns nil when every login has spoken and none has stalled: then
// nobody makes room and the newcomer is refused.
func (a *admissions) victim(now time.Time) *admission {
	if v := a.stalled(now); v != nil {
		return v
	}
	return a.oldestSilent()
}

// stalled takes the oldest login that has spoken off its list if it spoke staleLogin ago or
// more (nil otherwise).
func (a *admissions) stalled(now time.Time) *admission {
	if front := a.spoken.Front(); front != nil && now.Sub(front.Value.(*admission).at) >= staleLogin {
		return a.oldest(&a.spoken)
	}
	return nil
}

// oldestSilent takes the oldest connection that has sent nothing off the silent list (nil when
// there is none). One whose first bytes have arrived but whose session has not read them yet
// has spoken: it moves to the spoken list instead (one syscall, once for each connection), so
// a burst of valid clients does not push out those whose sessions are slow to start.
func (a *admissions) oldestSilent() *admission {
	for front := a.silent.Front(); front != nil; front = a.silent.Front() {
		adm := front.Value.(*admission)
		a.remove(adm)
		if !hasSpoken(adm.conn) {
			return adm
		}
		a.push(adm, &a.spoken)
	}
	return nil
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
// reports false when MaxClients clients are logged in, or when no login in progress may make
// room (all have spoken, none has stalled): the caller answers 53300 and closes conn.
func (p *Proxy) admit(conn net.Conn, rt *Runtime) (*admission, bool) {
	a := &p.admissions
	room := p.loginRoom(rt)
	if room == 0 {
		a.refused.Add(1)
		return nil, false
	}
	adm := &admission{conn: conn}
	spoken := false
	if room > 0 && a.n.Load() >= room {
		// Under pressure, a newcomer whose first bytes are already here has spoken (one syscall).
		spoken = hasSpoken(conn)
		if !spoken {
			if a.onHold.Add(1) <= room {
				adm.onHold = true
				return adm, true
			}
			a.onHold.Add(-1)
		}
	}
	if !a.place(adm, spoken, room) {
		return nil, false
	}
	return adm, true
}

// settle admits a connection that was put on hold, once it has spoken or after speakGrace,
// by the same rule as admit: it takes the place of a stalled or silent login, or is refused
// when every login in progress has spoken and none has stalled. The session calls it before
// it reads anything. It reports false when the connection is refused (that, or MaxClients
// clients logged in meanwhile): the caller answers 53300 and closes it.
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
	return p.admissions.place(adm, spoke, room)
}

// place puts adm on the spoken or the silent list, first closing connections that make room
// (victim) when room are logging in already. When none may make room it leaves the lists as
// they are, counts adm refused and reports false.
func (a *admissions) place(adm *admission, spoken bool, room int64) bool {
	var evict []net.Conn
	a.mu.Lock()
	now := time.Now()
	for room > 0 && a.n.Load() >= room {
		victim := a.victim(now)
		if victim == nil {
			a.mu.Unlock()
			a.refused.Add(1)
			a.closeEvicted(evict)
			return false
		}
		evict = append(evict, victim.conn)
	}
	if spoken {
		a.push(adm, &a.spoken)
	} else {
		a.push(adm, &a.silent)
	}
	a.mu.Unlock()
	a.closeEvicted(evict)
	return true
}

// closeEvicted closes connections taken off the lists to make room, counting them; their
// sessions see the read fail and end.
func (a *admissions) closeEvicted(evicted []net.Conn) {
	for _, c := range evicted {
		a.evicted.Add(1)
		_ = c.Close()
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
// login, else the oldest silent one, else the oldest login), if any, and reports whether there
// was one. The accept loop calls it when the process runs out of file descriptors, so a new
// client can get one.
//
// Unlike admission it closes a login that has spoken and not stalled when there is nothing
// else: without a free descriptor the accept loop cannot take a newcomer even to refuse it, so
// it would stop altogether. That is rare (MaxClients is lowered to fit the file limit, so
// only descriptors held outside the client caps bring it about), and it costs one login for
// each descriptor freed.
func (p *Proxy) EvictOldestLogin() bool {
	a := &p.admissions
	a.mu.Lock()
	victim := a.victim(time.Now())
	if victim == nil {
		victim = a.oldest(&a.spoken)
	}
	a.mu.Unlock()
	if victim == nil {
		return false
	}
	a.closeEvicted([]net.Conn{victim.conn})
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
