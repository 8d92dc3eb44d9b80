package session

import (
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
)

// stmtDef is one distinct prepared statement (query text + parameter types) with its
// pooler-wide server-side name. Clients that prepare the same text share it.
type stmtDef struct {
	serverName string
	query      string
	paramOIDs  []uint32
	// verified is set once PostgreSQL accepted a Parse of it: later Parses of the same text
	// by clients between transactions are answered without borrowing a connection (a client
	// that prepares synchronously while its other sessions hold connections, as pgbench
	// -M prepared does, would otherwise deadlock a small pool).
	verified atomic.Bool
}

// stmtRegistry assigns server names to distinct statements.
type stmtRegistry struct {
	mu   sync.RWMutex
	defs map[string]*stmtDef
	next atomic.Uint64
}

func newStmtRegistry() *stmtRegistry { return &stmtRegistry{defs: map[string]*stmtDef{}} }

// noopStatement is a name no statement ever has: closing it on the server is not an error and
// yields a CloseComplete, which lets the pooler answer a Parse or Close in protocol order
// without touching a real statement.
const noopStatement = "edgepool_noop"

func stmtKey(query string, oids []uint32) string {
	if len(oids) == 0 {
		return query
	}
	b := make([]byte, 0, len(query)+1+4*len(oids))
	b = append(b, query...)
	b = append(b, 0)
	for _, o := range oids {
		b = binary.BigEndian.AppendUint32(b, o)
	}
	return string(b)
}

// lookup returns the shared definition of query/oids, creating it on first use. The query
// string is copied only when it is new (the caller's bytes belong to a pooled buffer).
func (r *stmtRegistry) lookup(query []byte, oids []uint32) *stmtDef {
	key := stmtKey(string(query), oids) // the conversion in a map index does not allocate; here it does once
	r.mu.RLock()
	d, ok := r.defs[key]
	r.mu.RUnlock()
	if ok {
		return d
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.defs[key]; ok {
		return d
	}
	d = &stmtDef{
		serverName: "edgepool_" + strconv.FormatUint(r.next.Add(1), 10),
		query:      string(query),
		paramOIDs:  append([]uint32(nil), oids...),
	}
	r.defs[key] = d
	return d
}

// known returns the definition of query/oids if one exists, without creating it.
func (r *stmtRegistry) known(query []byte, oids []uint32) *stmtDef {
	key := stmtKey(string(query), oids)
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.defs[key]
}

// len is the number of distinct statements known.
func (r *stmtRegistry) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.defs)
}
