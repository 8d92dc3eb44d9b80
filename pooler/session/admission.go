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
// and at most MaxAuthenticating of them exist at once. When that many are logging in, a new
// connection takes the place of the one that has been at it longest, which is closed: a
// client that completes its login in milliseconds cannot be starved by any number of silent
// or trickling connections, which also cannot hold more file descriptors than the cap.
// Logged-in clients are never evicted; when they fill MaxClients new connections are refused
// with 53300.

// admissions tracks the connections still logging in, oldest first.
type admissions struct {
	mu      sync.Mutex
	pending list.List // of *admission
	n       atomic.Int64
	evicted atomic.Int64 // closed to make room for newer ones
	refused atomic.Int64 // refused because MaxClients were logged in
}

// admission is one connection logging in.
type admission struct {
	conn net.Conn
	elem *list.Element // nil once it left the list
}

// admit registers conn as logging in, evicting the oldest login in progress when
// MaxAuthenticating (or the room MaxClients leaves) is taken. It reports false when MaxClients
// clients are logged in: the caller refuses the connection.
func (p *Proxy) admit(conn net.Conn, rt *Runtime) (*admission, bool) {
	a := &p.admissions
	room := int64(-1) // no limit
	if rt.MaxClients > 0 {
		room = int64(rt.MaxClients) - p.clients.Load()
		if room <= 0 {
			a.refused.Add(1)
			return nil, false
		}
	}
	if rt.MaxAuthenticating > 0 && (room < 0 || int64(rt.MaxAuthenticating) < room) {
		room = int64(rt.MaxAuthenticating)
	}
	adm := &admission{conn: conn}
	var evict []net.Conn
	a.mu.Lock()
	for room >= 0 && int64(a.pending.Len()) >= room {
		oldest := a.pending.Front().Value.(*admission)
		a.pending.Remove(oldest.elem)
		oldest.elem = nil
		evict = append(evict, oldest.conn)
	}
	adm.elem = a.pending.PushBack(adm)
	a.n.Store(int64(a.pending.Len()))
	a.mu.Unlock()
	for _, c := range evict {
		a.evicted.Add(1)
		_ = c.Close() // its session sees the read fail and ends
	}
	return adm, true
}

// admitted ends adm's login phase (logged in, or failed).
func (p *Proxy) admitted(adm *admission) {
	a := &p.admissions
	a.mu.Lock()
	if adm.elem != nil {
		a.pending.Remove(adm.elem)
		adm.elem = nil
		a.n.Store(int64(a.pending.Len()))
	}
	a.mu.Unlock()
}

// EvictOldestLogin closes the connection that has been logging in longest, if any, and
// reports whether there was one. The accept loop calls it when the process runs out of file
// descriptors, so a new client can get one.
func (p *Proxy) EvictOldestLogin() bool {
	a := &p.admissions
	a.mu.Lock()
	front := a.pending.Front()
	if front == nil {
		a.mu.Unlock()
		return false
	}
	oldest := front.Value.(*admission)
	a.pending.Remove(front)
	oldest.elem = nil
	a.n.Store(int64(a.pending.Len()))
	a.mu.Unlock()
	a.evicted.Add(1)
	_ = oldest.conn.Close()
	return true
}

// refuseTooMany answers a connection that found MaxClients logged in, without reading
// anything from it, and closes it.
func refuseTooMany(conn net.Conn) {
	msg, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "53300",
		Message: "sorry, too many clients already"}).Encode(nil)
	_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = conn.Write(msg)
	_ = conn.Close()
}
