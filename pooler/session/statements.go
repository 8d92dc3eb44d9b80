package session

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// stmtDef is one distinct prepared statement (query text + parameter types) with its
// pooler-wide server-side name. Clients that prepare the same text share it.
type stmtDef struct {
	serverName string
	// key is the tail of the client's Parse body after the statement name: the query text, its
	// NUL, the parameter type count and the types. It identifies the statement and is what an
	// injected Parse sends after the server name.
	key string
	// verified is set once PostgreSQL accepted a Parse of it: later Parses of the same text
	// by clients between transactions are answered without borrowing a connection (a client
	// that prepares synchronously while its other sessions hold connections, as pgbench
	// -M prepared does, would otherwise deadlock a small pool).
	verified atomic.Bool

	// LRU list and accounting of the registry; guarded by its mu.
	prev, next *stmtDef
	inRegistry bool
}

// stmtOverhead approximates what one registered statement costs besides its key and name: the
// struct, the map entry and the server name's string header.
const stmtOverhead = 160

func (d *stmtDef) size() int64 { return int64(len(d.key) + len(d.serverName) + stmtOverhead) }

// stmtRegistry assigns server names to distinct statements. It holds at most budget bytes of
// them: beyond it the least recently prepared are forgotten (a client that still uses one keeps
// its definition; a later Parse of the same text gets a new server name). Statements PostgreSQL
// rejected are forgotten at once.
type stmtRegistry struct {
	mu         sync.Mutex
	defs       map[string]*stmtDef
	head, tail *stmtDef // most and least recently used
	bytes      int64
	budget     int64
	evicted    int64
	next       atomic.Uint64
}

func newStmtRegistry(budget int64) *stmtRegistry {
	return &stmtRegistry{defs: map[string]*stmtDef{}, budget: budget}
}

// noopStatement is a name no statement ever has: closing it on the server is not an error and
// yields a CloseComplete, which lets the pooler answer a Parse or Close in protocol order
// without touching a real statement.
const noopStatement = "edgepool_noop"

// lookup returns the shared definition for key (see stmtDef.key), creating it on first use;
// nil when key alone exceeds the registry's budget. The key is copied only when it is new (the
// caller's bytes belong to a pooled buffer).
func (r *stmtRegistry) lookup(key []byte) *stmtDef {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.defs[string(key)]; ok {
		r.touch(d)
		return d
	}
	d := &stmtDef{serverName: "edgepool_" + strconv.FormatUint(r.next.Add(1), 10), key: string(key)}
	if d.size() > r.maxStatementLocked() {
		return nil
	}
	r.defs[d.key] = d
	d.inRegistry = true
	r.pushFront(d)
	r.bytes += d.size()
	for r.bytes > r.budget && r.tail != nil && r.tail != d {
		r.removeLocked(r.tail)
		r.evicted++
	}
	return d
}

// maxStatement is the largest statement the registry takes.
func (r *stmtRegistry) maxStatement() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxStatementLocked()
}

// maxStatementLocked is the largest statement the registry takes: a quarter of its budget, so
// one statement cannot flush all the others.
func (r *stmtRegistry) maxStatementLocked() int64 { return r.budget / 4 }

// known returns the definition for key if one exists, without creating it.
func (r *stmtRegistry) known(key []byte) *stmtDef {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.defs[string(key)]
	if d != nil {
		r.touch(d)
	}
	return d
}

// forget drops d unless PostgreSQL accepted it somewhere (its Parse failed or was skipped).
func (r *stmtRegistry) forget(d *stmtDef) {
	if d.verified.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.inRegistry && !d.verified.Load() {
		r.removeLocked(d)
	}
}

// setBudget changes the byte budget (config reload), evicting down to it.
func (r *stmtRegistry) setBudget(budget int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.budget = budget
	for r.bytes > r.budget && r.tail != nil {
		r.removeLocked(r.tail)
		r.evicted++
	}
}

// registryStats is a snapshot for Stats.
type registryStats struct {
	count          int
	bytes, evicted int64
}

func (r *stmtRegistry) stats() registryStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return registryStats{count: len(r.defs), bytes: r.bytes, evicted: r.evicted}
}

func (r *stmtRegistry) removeLocked(d *stmtDef) {
	delete(r.defs, d.key)
	d.inRegistry = false
	r.bytes -= d.size()
	r.unlink(d)
}

func (r *stmtRegistry) touch(d *stmtDef) {
	if r.head != d {
		r.unlink(d)
		r.pushFront(d)
	}
}

func (r *stmtRegistry) pushFront(d *stmtDef) {
	d.prev, d.next = nil, r.head
	if r.head != nil {
		r.head.prev = d
	}
	r.head = d
	if r.tail == nil {
		r.tail = d
	}
}

func (r *stmtRegistry) unlink(d *stmtDef) {
	if d.prev != nil {
		d.prev.next = d.next
	} else if r.head == d {
		r.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else if r.tail == d {
		r.tail = d.prev
	}
	d.prev, d.next = nil, nil
}
