package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/edgepool/edgepool/pooler/pool"
)

// forward sends one client message to the attached upstream connection, rewriting prepared
// statement names (transaction pooling moves a client between connections, so its statements
// are given pooler-wide names and prepared on demand wherever it lands).
func (s *session) forward(typ byte, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forwardLocked(typ, body)
}

// forwardLocked is forward with mu held.
func (s *session) forwardLocked(typ byte, body []byte) error {
	c := s.upstream
	if c == nil {
		return errors.New("upstream connection lost")
	}
	for _, name := range s.failedNames {
		delete(s.stmts, name)
	}
	s.failedNames = s.failedNames[:0]
	if s.sbuf == nil {
		s.sbuf = getBuf()
		s.out = (*s.sbuf)[:0]
	}
	if !s.paramsSynced {
		s.paramsSynced = true
		s.appendParamSync(c)
	}
	switch typ {
	case 'P':
		return s.forwardParse(c, body)
	case 'B':
		return s.forwardBind(c, body)
	case 'D':
		return s.forwardDescribe(c, body)
	case 'C':
		return s.forwardClose(body)
	case 'Q':
		if q, _, ok := cstringBytes(body); ok && resetsStatements(q) {
			clear(s.stmts)
			c.Statements().Clear()
		}
		s.out = appendMsg(s.out, typ, body)
		s.syncSent()
	case 'S', 'F':
		s.out = appendMsg(s.out, typ, body)
		s.syncSent()
	case 'E', 'H':
		s.out = appendMsg(s.out, typ, body)
		s.inFlight = true
	case 'd', 'c', 'f':
		s.out = appendMsg(s.out, typ, body)
	default:
		return protocolError(fmt.Sprintf("invalid frontend message type %q", typ))
	}
	return nil
}

func (s *session) syncSent() {
	s.pending++
	s.sentSyncs++
	s.inFlight = false
}

func (s *session) pushAck(kind ackKind) {
	s.acks = append(s.acks, ack{kind: kind, batch: s.sentSyncs})
}

func (s *session) pushParseAck(kind ackKind, def *stmtDef, clientName string) {
	s.acks = append(s.acks, ack{kind: kind, batch: s.sentSyncs, serverName: def.serverName, clientName: clientName, def: def})
}

// ensurePrepared prepares def on c unless it is there already (evicting the least recently
// used statements beyond the per-connection cap). The injected ParseComplete is swallowed.
func (s *session) ensurePrepared(c *pool.Conn, def *stmtDef) {
	set := c.Statements()
	if set.Has(def.serverName) {
		return
	}
	for _, old := range set.Add(def.serverName, s.rt.PreparedPerConn) {
		s.out = appendClose(s.out, old)
		s.pushAck(ackCloseInjected)
	}
	s.out = appendParse(s.out, def.serverName, def.query, def.paramOIDs)
	s.pushParseAck(ackParseInjected, def, "")
}

func (s *session) forwardParse(c *pool.Conn, body []byte) error {
	name, query, oids, err := decodeParse(body)
	if err != nil {
		return err
	}
	s.inFlight = true
	if len(name) == 0 {
		// The unnamed statement lives only until the next Parse; pass it through.
		s.out = appendMsg(s.out, 'P', body)
		s.pushAck(ackForward)
		return nil
	}
	def := s.proxy.stmts.lookup(query, oids)
	if old, ok := s.stmts[string(name)]; !ok || old != def {
		s.stmts[string(name)] = def
	}
	set := c.Statements()
	if set.Has(def.serverName) {
		// Already prepared on this connection: answer in order via a harmless Close.
		s.out = appendClose(s.out, noopStatement)
		s.pushAck(ackCloseAsParse)
		return nil
	}
	for _, old := range set.Add(def.serverName, s.rt.PreparedPerConn) {
		s.out = appendClose(s.out, old)
		s.pushAck(ackCloseInjected)
	}
	s.out = appendParse(s.out, def.serverName, def.query, def.paramOIDs)
	s.pushParseAck(ackForward, def, string(name))
	return nil
}

func (s *session) forwardBind(c *pool.Conn, body []byte) error {
	s.inFlight = true
	portal, rest, ok := cstringBytes(body)
	if !ok {
		return protocolError("invalid Bind message")
	}
	stmt, rest, ok := cstringBytes(rest)
	if !ok {
		return protocolError("invalid Bind message")
	}
	def := s.stmts[string(stmt)]
	if len(stmt) == 0 || def == nil {
		s.out = appendMsg(s.out, 'B', body)
		return nil
	}
	s.ensurePrepared(c, def)
	s.out = appendMsg(s.out, 'B', portal, zero, []byte(def.serverName), zero, rest)
	return nil
}

func (s *session) forwardDescribe(c *pool.Conn, body []byte) error {
	s.inFlight = true
	if len(body) < 2 {
		return protocolError("invalid Describe message")
	}
	name, _, ok := cstringBytes(body[1:])
	if !ok {
		return protocolError("invalid Describe message")
	}
	def := s.stmts[string(name)]
	if body[0] != 'S' || len(name) == 0 || def == nil {
		s.out = appendMsg(s.out, 'D', body)
		return nil
	}
	s.ensurePrepared(c, def)
	s.out = appendMsg(s.out, 'D', []byte{'S'}, []byte(def.serverName), zero)
	return nil
}

func (s *session) forwardClose(body []byte) error {
	s.inFlight = true
	if len(body) < 2 {
		return protocolError("invalid Close message")
	}
	name, _, ok := cstringBytes(body[1:])
	if !ok {
		return protocolError("invalid Close message")
	}
	if body[0] == 'S' && len(name) > 0 {
		if _, known := s.stmts[string(name)]; known {
			// Other clients may share the server statement; forget only the client's name.
			delete(s.stmts, string(name))
			s.out = appendClose(s.out, noopStatement)
			s.pushAck(ackForward)
			return nil
		}
	}
	s.out = appendMsg(s.out, 'C', body)
	s.pushAck(ackForward)
	return nil
}

// flushUpstream writes buffered client messages to the upstream connection.
func (s *session) flushUpstream() error {
	if s.sbuf == nil {
		return nil
	}
	s.mu.Lock()
	conn := s.sconn
	s.mu.Unlock()
	var err error
	if len(s.out) > 0 && conn != nil {
		_, err = conn.Write(s.out)
	}
	if cap(s.out) <= 64<<10 {
		*s.sbuf = s.out[:cap(s.out)]
		putBuf(s.sbuf)
	}
	s.sbuf, s.out = nil, nil
	if err != nil {
		return fmt.Errorf("write upstream: %w", err)
	}
	return nil
}

var zero = []byte{0}

// resetsStatements reports whether a simple query drops every prepared statement
// (DISCARD ALL, DEALLOCATE ALL, DEALLOCATE PREPARE ALL).
func resetsStatements(q []byte) bool {
	q = bytes.TrimSpace(bytes.TrimRight(bytes.TrimSpace(q), ";"))
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

// decodeParse splits a Parse body without copying: name, query, parameter type OIDs.
func decodeParse(body []byte) (name, query []byte, oids []uint32, err error) {
	name, rest, ok := cstringBytes(body)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: invalid Parse message", ErrProtocol)
	}
	query, rest, ok = cstringBytes(rest)
	if !ok || len(rest) < 2 {
		return nil, nil, nil, fmt.Errorf("%w: invalid Parse message", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 4*n {
		return nil, nil, nil, fmt.Errorf("%w: invalid Parse parameter types", ErrProtocol)
	}
	if n > 0 {
		oids = make([]uint32, n)
		for i := range oids {
			oids[i] = binary.BigEndian.Uint32(rest[4*i:])
		}
	}
	return name, query, oids, nil
}

func appendParse(dst []byte, name, query string, oids []uint32) []byte {
	n := 4 + len(name) + 1 + len(query) + 1 + 2 + 4*len(oids)
	dst = append(dst, 'P')
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, query...)
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(oids)))
	for _, o := range oids {
		dst = binary.BigEndian.AppendUint32(dst, o)
	}
	return dst
}

// appendClose frames a Close of prepared statement name.
func appendClose(dst []byte, name string) []byte {
	dst = append(dst, 'C')
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+1+len(name)+1))
	dst = append(dst, 'S')
	dst = append(dst, name...)
	return append(dst, 0)
}
