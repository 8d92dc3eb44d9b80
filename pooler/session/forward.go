package session

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// forward appends one whole client message for the attached upstream connection to s.srv.out and
// records what it asks for. Prepared statement names are rewritten: transaction pooling moves a
// client between connections, so its statements get pooler-wide names and are prepared on
// demand wherever it lands (the PgBouncer 1.21 approach).
func (s *session) forward(typ byte, body []byte) error {
	u := s.srv
	if u.skipping {
		// PostgreSQL skips everything up to the Sync after an error in the batch.
		if typ != 'S' {
			return nil
		}
		u.skipping = false
	}
	if u.copyIn {
		return s.forwardCopyIn(typ, body)
	}
	switch typ {
	case 'P':
		return s.forwardParse(body)
	case 'B':
		return s.forwardBind(body)
	case 'D':
		return s.forwardDescribe(body)
	case 'C':
		return s.forwardClose(body)
	case 'E':
		s.srv.out = appendMsg(s.srv.out, typ, body)
		u.unsynced = true
		u.push(request{kind: reqExecute})
	case 'H':
		s.srv.out = appendMsg(s.srv.out, typ, body)
		u.flush()
	case 'S':
		s.srv.out = appendMsg(s.srv.out, typ, body)
		u.unsynced = false
		u.push(request{kind: reqSync})
		u.flush()
	case 'Q':
		if q, _, ok := cstringBytes(body); ok && resetsStatements(q) {
			clear(s.stmts)
			u.pc.Statements().Clear()
		}
		s.srv.out = appendMsg(s.srv.out, typ, body)
		u.push(request{kind: reqQuery})
		u.flush()
	case 'F':
		s.srv.out = appendMsg(s.srv.out, typ, body)
		u.push(request{kind: reqFunction})
		u.flush()
	case 'd', 'c', 'f':
		// Outside COPY PostgreSQL ignores them (a client finishing a COPY that failed).
		s.srv.out = appendMsg(s.srv.out, typ, body)
	default:
		return protocolError(fmt.Sprintf("invalid frontend message type %q", typ))
	}
	return nil
}

// forwardCopyIn passes on what the client sends while the server reads COPY data.
func (s *session) forwardCopyIn(typ byte, body []byte) error {
	switch typ {
	case 'd':
	case 'c', 'f':
		s.srv.copyIn = false
	case 'H', 'S':
		// Ignored by PostgreSQL during COPY (libpq sends them not knowing it was a COPY).
	default:
		return protocolError(fmt.Sprintf("message %q during COPY FROM STDIN", typ))
	}
	s.srv.out = appendMsg(s.srv.out, typ, body)
	return nil
}

// ensurePrepared prepares def on the connection unless it is there already (evicting the least
// recently used statements beyond the per-connection cap). The injected ParseComplete is
// swallowed.
func (s *session) ensurePrepared(def *stmtDef) {
	u := s.srv
	set := u.pc.Statements()
	if set.Has(def.serverName) {
		return
	}
	for _, old := range set.Add(def.serverName, s.rt.PreparedPerConn) {
		s.srv.out = appendClose(s.srv.out, old)
		u.push(request{kind: reqCloseInjected})
	}
	s.srv.out = appendParse(s.srv.out, def)
	u.push(request{kind: reqParseInjected, def: def})
}

// splitParse checks a Parse body and splits it into the statement name and the rest (query,
// parameter types): the registry's key.
func splitParse(body []byte) (name, key []byte, err error) {
	name, rest, ok := cstringBytes(body)
	if !ok {
		return nil, nil, protocolError("invalid Parse message")
	}
	_, tail, ok := cstringBytes(rest)
	if !ok || len(tail) < 2 || len(tail) != 2+4*int(binary.BigEndian.Uint16(tail)) {
		return nil, nil, protocolError("invalid Parse message")
	}
	return name, rest, nil
}

func (s *session) forwardParse(body []byte) error {
	u := s.srv
	name, key, err := splitParse(body)
	if err != nil {
		return err
	}
	u.unsynced = true
	if len(name) == 0 {
		// The unnamed statement lives only until the next Parse; pass it through.
		s.srv.out = appendMsg(s.srv.out, 'P', body)
		u.push(request{kind: reqParse})
		return nil
	}
	def, clientName, err := s.nameStatement(name, key)
	if err != nil {
		return err
	}
	set := u.pc.Statements()
	if set.Has(def.serverName) {
		// Already prepared on this connection: answer in order via a harmless Close.
		s.srv.out = appendClose(s.srv.out, noopStatement)
		u.push(request{kind: reqParseAsClose})
		return nil
	}
	for _, old := range set.Add(def.serverName, s.rt.PreparedPerConn) {
		s.srv.out = appendClose(s.srv.out, old)
		u.push(request{kind: reqCloseInjected})
	}
	s.srv.out = appendParse(s.srv.out, def)
	u.push(request{kind: reqParse, def: def, clientName: clientName})
	return nil
}

// nameStatement maps the client's statement name to the shared definition of key.
func (s *session) nameStatement(name, key []byte) (*stmtDef, string, error) {
	def := s.proxy.stmts.lookup(key)
	if def == nil {
		return nil, "", &tooLargeError{what: "prepared statement", n: len(key)}
	}
	if old, ok := s.stmts[string(name)]; ok && old == def {
		return def, "", nil
	}
	if s.stmts == nil {
		s.stmts = map[string]*stmtDef{}
	}
	clientName := string(name)
	s.stmts[clientName] = def
	return def, clientName, nil
}

func (s *session) forwardBind(body []byte) error {
	u := s.srv
	portal, rest, ok := cstringBytes(body)
	if !ok {
		return protocolError("invalid Bind message")
	}
	stmt, rest, ok := cstringBytes(rest)
	if !ok {
		return protocolError("invalid Bind message")
	}
	u.unsynced = true
	def := s.stmts[string(stmt)]
	if len(stmt) == 0 || def == nil {
		s.srv.out = appendMsg(s.srv.out, 'B', body)
		u.push(request{kind: reqBind})
		return nil
	}
	s.ensurePrepared(def)
	s.srv.out = appendBind(s.srv.out, portal, def.serverName, len(rest))
	s.srv.out = append(s.srv.out, rest...)
	u.push(request{kind: reqBind})
	return nil
}

// appendBind frames the start of a Bind naming server statement name; restLen bytes (the
// parameters, as the client sent them) must follow.
func appendBind(dst, portal []byte, name string, restLen int) []byte {
	dst = append(dst, 'B')
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(portal)+1+len(name)+1+restLen))
	dst = append(dst, portal...)
	dst = append(dst, 0)
	dst = append(dst, name...)
	return append(dst, 0)
}

func (s *session) forwardDescribe(body []byte) error {
	u := s.srv
	if len(body) < 2 {
		return protocolError("invalid Describe message")
	}
	name, _, ok := cstringBytes(body[1:])
	if !ok {
		return protocolError("invalid Describe message")
	}
	u.unsynced = true
	def := s.stmts[string(name)]
	if body[0] != 'S' || len(name) == 0 || def == nil {
		s.srv.out = appendMsg(s.srv.out, 'D', body)
		u.push(request{kind: reqDescribe})
		return nil
	}
	s.ensurePrepared(def)
	s.srv.out = append(s.srv.out, 'D')
	s.srv.out = binary.BigEndian.AppendUint32(s.srv.out, uint32(4+1+len(def.serverName)+1))
	s.srv.out = append(s.srv.out, 'S')
	s.srv.out = append(s.srv.out, def.serverName...)
	s.srv.out = append(s.srv.out, 0)
	u.push(request{kind: reqDescribe})
	return nil
}

func (s *session) forwardClose(body []byte) error {
	u := s.srv
	if len(body) < 2 {
		return protocolError("invalid Close message")
	}
	name, _, ok := cstringBytes(body[1:])
	if !ok {
		return protocolError("invalid Close message")
	}
	u.unsynced = true
	u.push(request{kind: reqClose})
	if body[0] == 'S' && len(name) > 0 {
		if _, known := s.stmts[string(name)]; known {
			// Other clients may share the server statement; forget only the client's name.
			delete(s.stmts, string(name))
			s.srv.out = appendClose(s.srv.out, noopStatement)
			return nil
		}
	}
	s.srv.out = appendMsg(s.srv.out, 'C', body)
	return nil
}

// answerIdle answers a message that needs no upstream connection while the session holds
// none; it reports false when the message needs a connection.
func (s *session) answerIdle(typ byte, body []byte) (bool, error) {
	switch typ {
	case 'S':
		return true, s.w.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case 'H':
		return true, nil
	case 'C':
		// Nothing is open between transactions but the client's statement names.
		if len(body) > 1 && body[0] == 'S' {
			if name, _, ok := cstringBytes(body[1:]); ok {
				delete(s.stmts, string(name))
			}
		}
		return true, s.w.send(&pgproto3.CloseComplete{})
	case 'd', 'c', 'f':
		return true, nil // PostgreSQL ignores COPY messages outside COPY, too
	case 'P':
		return s.parseLocally(body)
	}
	return false, nil
}

// parseLocally answers a named Parse of a statement PostgreSQL already accepted without an
// upstream connection; it is prepared on demand at Bind/Describe.
func (s *session) parseLocally(body []byte) (bool, error) {
	name, key, err := splitParse(body)
	if err != nil {
		return false, err
	}
	if len(name) == 0 {
		return false, nil
	}
	def := s.proxy.stmts.known(key)
	if def == nil || !def.verified.Load() {
		return false, nil
	}
	if old, ok := s.stmts[string(name)]; !ok || old != def {
		if s.stmts == nil {
			s.stmts = map[string]*stmtDef{}
		}
		s.stmts[string(name)] = def
	}
	return true, s.w.send(&pgproto3.ParseComplete{})
}

func validFrontendType(t byte) bool {
	switch t {
	case 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'Q', 'F', 'd', 'c', 'f', 'X':
		return true
	}
	return false
}

// tooLargeError is a client request beyond what the pooler holds in memory.
type tooLargeError struct {
	what string
	n    int
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s of %d bytes is larger than the pooler keeps", e.what, e.n)
}

var zero = []byte{0}

// resetsStatements reports whether a simple query drops every prepared statement
// (DISCARD ALL, DEALLOCATE ALL, DEALLOCATE PREPARE ALL).
func resetsStatements(q []byte) bool {
	q = bytes.TrimSpace(bytes.TrimRight(bytes.TrimSpace(q), ";"))
	if len(q) < 11 || len(q) > 64 || (q[0]|0x20) != 'd' {
		return false // not one of them: no work (this runs for every simple query)
	}
	f := bytes.Fields(q)
	switch {
	case len(f) == 2 && bytes.EqualFold(f[0], []byte("discard")) && bytes.EqualFold(f[1], []byte("all")):
		return true
	case len(f) == 2 && bytes.EqualFold(f[0], []byte("deallocate")) && bytes.EqualFold(f[1], []byte("all")):
		return true
	case len(f) == 3 && bytes.EqualFold(f[0], []byte("deallocate")) && bytes.EqualFold(f[1], []byte("prepare")) &&
		bytes.EqualFold(f[2], []byte("all")):
		return true
	}
	return false
}

// appendParse frames a Parse of def under its server name.
func appendParse(dst []byte, def *stmtDef) []byte {
	dst = append(dst, 'P')
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(def.serverName)+1+len(def.key)))
	dst = append(dst, def.serverName...)
	dst = append(dst, 0)
	return append(dst, def.key...)
}

// appendClose frames a Close of prepared statement name.
func appendClose(dst []byte, name string) []byte {
	dst = append(dst, 'C')
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+1+len(name)+1))
	dst = append(dst, 'S')
	dst = append(dst, name...)
	return append(dst, 0)
}
