package session

import (
	"container/list"
	"encoding/binary"
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
// A login in progress is silent (nothing received yet), started (its latest startup-phase
// packet is here: the server has asked it to authenticate, or to go on with TLS), answered (it
// has sent a message of the auth exchange) or verified (it proved its key). When the logins in
// progress fill the room (MaxAuthenticating, or what MaxClients leaves), a newcomer takes the
// place of one of them, which is closed: an answered login that has stalled (nothing from it
// for staleLogin), else the oldest silent one, else the oldest started one that has not gone
// on within answerGrace. Nobody else is pushed out: a valid client answers within a round trip
// and finishes moments later, and evicting the oldest login for each newcomer let a burst of
// valid clients push every login out before it finished, so that nobody got in.
//
// Every connection gets speakGrace to send its first bytes (they may trail the handshake): a
// newcomer that finds no room is held that long before it joins, and one that found room is
// spared on the silent list that long. One still silent after its hold takes the place of one
// that may be pushed out, or is refused. A silent newcomer that cannot be held (room of them
// are on hold: a silent flood) pushes out the oldest silent login, spared or not.
//
// A newcomer that has spoken and finds nobody it may push out waits for a place, holding none
// and read by nobody, at most staleLogin (and not past its auth timeout, which runs from the
// session's start); then it is refused with 53300. At most room wait, in the order they were
// accepted; when one more comes, the one accepted first is refused. The newest takes the first
// place that comes free: in a flood, those accepted before a valid client are more likely the
// flood. A connection whose first packet is a whole CancelRequest takes no place and pushes
// nobody out: it is not a login (pgx opens one after every connection that fails while logging
// in, so each eviction would otherwise bring a newcomer that evicts another).
//
// The price, against floods: a connection that sends a startup packet and then stalls holds a
// place for answerGrace. An attacker who opens more than about room/answerGrace of them a
// second keeps the room and the waiting line full, and valid clients get 53300 while that
// lasts; one whose connections also send the first SCRAM message (no key needed) holds each
// place for staleLogin, so room/staleLogin a second are enough. When the room is full, a
// client more than answerGrace away (one round trip to answer the auth request, two for the
// TLS handshake) may be pushed out. Silent floods push out mostly themselves (and a valid
// client whose first bytes trail its handshake, when they come faster than room per
// speakGrace).
//
// Connections are admitted in the order they were accepted (on the accept loop, before their
// session starts); holding and waiting happen on the session's goroutine.

// staleLogin is how long an answered login may go without sending anything before a newcomer
// may take its place. It also bounds a newcomer's wait for a place.
const staleLogin = time.Second

// answerGrace is how long a started login may take to send its next message (one round trip)
// before a newcomer may take its place.
const answerGrace = 500 * time.Millisecond

// speakGrace is how long a new connection may take to send its first bytes (they may trail
// the handshake by a moment) before it counts as silent.
const speakGrace = 100 * time.Millisecond

// admissions tracks the connections still logging in by how far they have got, each list
// oldest first, and the newcomers waiting for a place.
type admissions struct {
	mu       sync.Mutex
	silent   list.List // of *admission: nothing read from them yet
	started  list.List // of *admission: a startup-phase packet read, no auth message yet
	answered list.List // of *admission: in the auth exchange; heard from longest ago first
	verified list.List // of *admission: proved their key; never pushed out by a newcomer
	waiting  list.List // of *admission: newcomers waiting for a place (not logging in yet)
	// changed is closed, and dropped, when an admission leaves a list: newcomers waiting for a
	// place look again. nil when nobody waits.
	changed chan struct{}
	n       atomic.Int64 // logging in: silent, started, answered and verified
	waiters atomic.Int64 // waiting for a place
	evicted atomic.Int64 // closed to make room for newer ones
	refused atomic.Int64 // refused: MaxClients logged in, or no place for them in time
	onHold  atomic.Int64 // newcomers given speakGrace before they join
}

// admission is one connection logging in.
type admission struct {
	conn     net.Conn
	accepted time.Time     // when admit saw it
	in       *list.List    // the list it is on; nil once it left, or never joined (a cancel request)
	elem     *list.Element //
	at       time.Time     // when it joined that list, or (answered) last sent a message
	// onHold: it found no room and had not spoken; settle admits it.
	onHold bool
	// foundRoom: it was let in below the cap (not held, nobody made room for it); its
	// speakGrace runs on the silent list (spared).
	foundRoom bool
	// out: it was taken out of the waiting line without a place; settle refuses it.
	out bool
}

// spared reports whether adm, silent, is still in the speakGrace it was given on the silent
// list (it found room when accepted): nobody but a silent newcomer in a flood pushes it out.
func (adm *admission) spared(now time.Time) bool {
	return adm.foundRoom && now.Sub(adm.accepted) < speakGrace
}

func (a *admissions) push(adm *admission, l *list.List) {
	adm.in, adm.elem, adm.at = l, l.PushBack(adm), time.Now()
	a.count()
}

// remove takes adm off its list and wakes the newcomers waiting for a place: a place may be
// free, or one of them was taken out of the line.
func (a *admissions) remove(adm *admission) {
	if adm.in == nil {
		return
	}
	adm.in.Remove(adm.elem)
	adm.in, adm.elem = nil, nil
	a.count()
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

func (a *admissions) count() {
	a.n.Store(int64(a.silent.Len() + a.started.Len() + a.answered.Len() + a.verified.Len()))
	a.waiters.Store(int64(a.waiting.Len()))
}

// victim takes the login that should make room off its list: an answered login that has
// stalled, else the oldest silent one that is not in its speakGrace (spared), else the oldest
// started one past answerGrace, else, for a silent newcomer in a flood (flood), the oldest
// silent one. It returns nil when none may be pushed out.
func (a *admissions) victim(now time.Time, flood bool) *admission {
	if front := a.answered.Front(); front != nil && now.Sub(front.Value.(*admission).at) >= staleLogin {
		return a.oldest(&a.answered)
	}
	if v := a.oldestSilent(now, false); v != nil {
		return v
	}
	if front := a.started.Front(); front != nil && now.Sub(front.Value.(*admission).at) >= answerGrace {
		return a.oldest(&a.started)
	}
	if flood {
		return a.oldestSilent(now, true)
	}
	return nil
}

// nextVictim is when the first login that may not be pushed out now may be (zero: never, as
// things stand).
func (a *admissions) nextVictim(now time.Time) time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if front := a.answered.Front(); front != nil {
		earlier(front.Value.(*admission).at.Add(staleLogin))
	}
	if front := a.started.Front(); front != nil {
		earlier(front.Value.(*admission).at.Add(answerGrace))
	}
	for e := a.silent.Front(); e != nil; e = e.Next() {
		if adm := e.Value.(*admission); adm.spared(now) {
			earlier(adm.accepted.Add(speakGrace))
		}
	}
	return next
}

// oldestSilent takes the oldest connection that has sent nothing off the silent list, or
// returns nil; unless evenSpared, it passes over those that are spared. One whose first bytes
// have arrived but whose session has not read them yet has started: it moves to the started
// list instead (one syscall, once for each connection), so a burst of valid clients does not
// push out those whose sessions are slow to start.
func (a *admissions) oldestSilent(now time.Time, evenSpared bool) *admission {
	for e := a.silent.Front(); e != nil; {
		adm := e.Value.(*admission)
		e = e.Next()
		if !evenSpared && adm.spared(now) {
			continue
		}
		a.remove(adm)
		if !hasSpoken(adm.conn) {
			return adm
		}
		a.push(adm, &a.started)
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
// MaxClients leaves) is taken. At the cap, a whole CancelRequest is admitted without a place; a
// newcomer that has not spoken yet is put on hold (at most room of them); one that has spoken
// and finds nobody who may make room joins the waiting line. settle does the rest. It reports
// false when MaxClients clients are logged in, or when a silent newcomer beyond those on hold
// finds nobody who may make room: the caller answers 53300 and closes conn.
func (p *Proxy) admit(conn net.Conn, rt *Runtime) (*admission, bool) {
	a := &p.admissions
	room := p.loginRoom(rt)
	if room == 0 {
		a.refused.Add(1)
		return nil, false
	}
	adm := &admission{conn: conn, accepted: time.Now()}
	spoken := false
	if adm.foundRoom = room < 0 || a.n.Load() < room; !adm.foundRoom {
		// Under pressure, look at what has arrived already (one syscall).
		var cancel bool
		if spoken, cancel = firstBytes(conn); cancel {
			return adm, true // not a login: its session serves it at once
		}
		if !spoken {
			if a.onHold.Add(1) <= room {
				adm.onHold = true
				return adm, true
			}
			a.onHold.Add(-1)
		}
	}
	if !a.place(adm, spoken, !spoken, room) {
		return nil, false
	}
	return adm, true
}

// settle finishes admitting a newcomer on its session's goroutine, before anything is read: one
// on hold is placed by the same rule as in admit once it has spoken or after speakGrace; one in
// the waiting line waits for a place, not past authBy (the end of its login's auth timeout,
// which counts from its start). It reports false when the newcomer is refused: the caller
// answers 53300 and closes it.
func (p *Proxy) settle(adm *admission, rt *Runtime, authBy time.Time) bool {
	a := &p.admissions
	if adm.onHold {
		spoken := waitSpoken(adm.conn, speakGrace)
		adm.onHold = false
		a.onHold.Add(-1)
		if spoken {
			if _, cancel := firstBytes(adm.conn); cancel {
				return true
			}
		}
		room := p.loginRoom(rt)
		if room == 0 {
			a.refused.Add(1)
			return false
		}
		if !a.place(adm, spoken, false, room) {
			return false
		}
	}
	return p.waitForPlace(adm, rt, authBy)
}

// place puts adm on the started or the silent list, first closing logins that make room
// (victim) when room are logging in already. When nobody may make room, a newcomer that has
// spoken joins the waiting line, and a silent one is counted refused: place reports false.
// The line holds at most room newcomers, in the order they were accepted: when it is full,
// the one accepted first (adm itself, or the front of the line) is refused.
func (a *admissions) place(adm *admission, spoken, flood bool, room int64) bool {
	var evict []net.Conn
	defer func() { a.closeEvicted(evict) }()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.makeRoom(room, time.Now(), flood, &evict) {
		if spoken {
			a.push(adm, &a.started)
		} else {
			a.push(adm, &a.silent)
		}
		return true
	}
	if !spoken {
		a.refused.Add(1)
		return false
	}
	a.queue(adm)
	if int64(a.waiting.Len()) > room {
		first := a.oldest(&a.waiting)
		first.out = true
		a.refused.Add(1)
		return first != adm
	}
	return true
}

// queue puts adm in the waiting line, which is in the order the newcomers were accepted (they
// may join it later than that, after their hold).
func (a *admissions) queue(adm *admission) {
	e := a.waiting.Back()
	for e != nil && adm.accepted.Before(e.Value.(*admission).accepted) {
		e = e.Prev()
	}
	if e == nil {
		adm.elem = a.waiting.PushFront(adm)
	} else {
		adm.elem = a.waiting.InsertAfter(adm, e)
	}
	adm.in, adm.at = &a.waiting, time.Now()
	a.count()
}

// makeRoom takes logins off their lists (victim, their connections collected in evict) until
// fewer than room are logging in, and reports whether it got there. The caller holds a.mu.
func (a *admissions) makeRoom(room int64, now time.Time, flood bool, evict *[]net.Conn) bool {
	for room > 0 && a.n.Load() >= room {
		v := a.victim(now, flood)
		if v == nil {
			return false
		}
		*evict = append(*evict, v.conn)
	}
	return true
}

// waitForPlace waits, when adm is in the waiting line, until it is the newest newcomer in the
// line and there is room or a login may make room; it then moves to the started list. The
// newest goes first: in a flood, those accepted before a valid client are more likely the
// flood. It looks again whenever an admission leaves a list, and (the newest) when the next
// login may be pushed out. It reports false when adm is refused: taken out of the line for a
// newer newcomer, MaxClients clients logged in meanwhile, or no place within staleLogin (or by
// authBy, when that comes first).
func (p *Proxy) waitForPlace(adm *admission, rt *Runtime, authBy time.Time) bool {
	a := &p.admissions
	deadline := minTime(time.Now().Add(staleLogin), authBy)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var evict []net.Conn
		a.mu.Lock()
		if adm.in != &a.waiting {
			a.mu.Unlock()
			return !adm.out // placed already (or a cancel request), unless taken out of the line
		}
		now := time.Now()
		room := p.loginRoom(rt)
		if room == 0 || !now.Before(deadline) {
			a.remove(adm)
			a.refused.Add(1)
			a.mu.Unlock()
			return false
		}
		newest := a.waiting.Back() == adm.elem
		if newest && a.makeRoom(room, now, false, &evict) {
			a.remove(adm)
			a.push(adm, &a.started)
			a.mu.Unlock()
			a.closeEvicted(evict)
			return true
		}
		wake := deadline
		if next := a.nextVictim(now); newest && !next.IsZero() && next.Before(wake) {
			wake = next
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		changed := a.changed
		a.mu.Unlock()
		a.closeEvicted(evict)
		if timer == nil {
			timer = time.NewTimer(time.Until(wake))
		} else {
			timer.Reset(time.Until(wake))
		}
		select {
		case <-changed:
		case <-timer.C:
		}
	}
}

// closeEvicted closes connections taken off the lists to make room, counting them; their
// sessions see the read fail and end.
func (a *admissions) closeEvicted(evicted []net.Conn) {
	for _, c := range evicted {
		a.evicted.Add(1)
		_ = c.Close()
	}
}

// spoke records that adm's connection sent a startup-phase packet (SSLRequest, GSSENCRequest or
// StartupMessage, each at most once): it has started, and its answerGrace runs from now.
func (p *Proxy) spoke(adm *admission) {
	p.admissions.move(adm, &p.admissions.started, &p.admissions.silent, &p.admissions.started)
}

// answered records that adm's connection sent a message of the auth exchange: no newcomer
// takes its place until it stalls (staleLogin without another).
func (p *Proxy) answered(adm *admission) {
	p.admissions.move(adm, &p.admissions.answered, &p.admissions.started, &p.admissions.answered)
}

// verified records that adm's client proved its key: no newcomer takes its place.
func (p *Proxy) verified(adm *admission) {
	p.admissions.move(adm, &p.admissions.verified, &p.admissions.started, &p.admissions.answered)
}

// move puts adm at the back of to (its time restarts) if it is on one of from.
func (a *admissions) move(adm *admission, to *list.List, from ...*list.List) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range from {
		if adm.in == l {
			a.remove(adm)
			a.push(adm, to)
			return
		}
	}
}

// admitted ends adm's login phase (logged in, or failed).
func (p *Proxy) admitted(adm *admission) {
	a := &p.admissions
	a.mu.Lock()
	a.remove(adm)
	a.mu.Unlock()
}

// EvictOldestLogin closes the connection that should make room first, if any, and reports
// whether there was one: a login that a newcomer may push out, else the newcomer that has
// waited longest for a place (refused), else the oldest silent, started, answered or verified
// login. The
// accept loop calls it when the process runs out of file descriptors, so a new client can get
// one.
//
// Unlike admission it closes logins that a newcomer may not push out when there is nothing
// else: without a free descriptor the accept loop cannot take a newcomer even to refuse it, so
// it would stop altogether. That is rare (MaxClients is lowered to fit the file limit, so only
// descriptors held outside the client caps bring it about), and it costs one login for each
// descriptor freed.
func (p *Proxy) EvictOldestLogin() bool {
	a := &p.admissions
	a.mu.Lock()
	victim := a.victim(time.Now(), false)
	if victim == nil && a.waiting.Len() > 0 {
		waiter := a.oldest(&a.waiting)
		waiter.out = true
		a.refused.Add(1)
		a.mu.Unlock()
		refuseTooMany(waiter.conn)
		return true
	}
	for _, l := range []*list.List{&a.silent, &a.started, &a.answered, &a.verified} {
		if victim == nil {
			victim = a.oldest(l)
		}
	}
	a.mu.Unlock()
	if victim == nil {
		return false
	}
	a.closeEvicted([]net.Conn{victim.conn})
	return true
}

// hasSpoken reports whether conn has bytes waiting to be read (or is not a plain TCP
// connection, whose transport has spoken already), without reading them or waiting.
func hasSpoken(conn net.Conn) bool {
	spoken, _ := firstBytes(conn)
	return spoken
}

// firstBytes is hasSpoken, and also reports whether the bytes waiting are a whole
// CancelRequest (its session reads it without waiting). One syscall.
func firstBytes(conn net.Conn) (spoken, cancel bool) {
	var b [maxCancelPacket]byte
	n := peek(conn, b[:])
	if n < 0 {
		return true, false
	}
	if n < 8 || binary.BigEndian.Uint32(b[4:]) != codeCancel {
		return n > 0, false
	}
	size := int(binary.BigEndian.Uint32(b[:]))
	return true, size >= minCancelPacket && size <= maxCancelPacket && n >= size
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
