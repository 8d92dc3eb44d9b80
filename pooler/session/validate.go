package session

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// checkMessage checks the layout of a whole client message of a type that is forwarded
// upstream, as PostgreSQL will read it (pqformat: strings NUL-terminated, counts followed by
// that many fields, nothing left over), so garbage behind a valid type byte closes that client
// with 08P01 here and never reaches — or takes — an upstream connection. It checks layout
// only: what PostgreSQL answers with a plain ERROR (an unknown statement, a bad Describe
// target, a format count that does not match) is left to PostgreSQL. It allocates nothing
// unless the message is malformed.
func checkMessage(typ byte, body []byte) error { return checkMessageStart(typ, body, len(body)) }

// checkMessageStart is checkMessage for a message of body length n larger than the read
// buffer, which is streamed upstream in pieces: it checks the fields that start in prefix (the
// body's first bytes) against n, before the message takes a connection. What lies beyond the
// prefix PostgreSQL checks: a malformed end costs that one upstream connection (PostgreSQL
// closes it), never more, and only a client that sent a well-formed start that large can cause
// it.
func checkMessageStart(typ byte, prefix []byte, n int) error {
	m := msgCursor{b: prefix, n: n}
	switch typ {
	case 'Q': // query string
		m.str()
	case 'P': // statement name, query, parameter type OIDs
		m.str()
		m.str()
		m.skip(4 * m.count())
	case 'B': // portal, statement, parameter formats, parameters, result formats
		m.str()
		m.str()
		m.skip(2 * m.count())
		m.values()
		m.skip(2 * m.count())
	case 'F': // function OID, argument formats, arguments, result format
		m.skip(4)
		m.skip(2 * m.count())
		m.values()
		m.skip(2)
	case 'E': // portal, row limit
		m.str()
		m.skip(4)
	case 'D', 'C': // 'S' or 'P', name
		m.skip(1)
		m.str()
	case 'f': // CopyFail: error message
		m.str()
	case 'S', 'H', 'c': // Sync, Flush, CopyDone: no body
	default:
		return nil // CopyData: any bytes
	}
	if m.going() && m.off != n {
		m.fail("%d bytes left over", n-m.off)
	}
	if m.err != nil {
		return protocolError(fmt.Sprintf("invalid %q message: %v", typ, m.err))
	}
	return nil
}

// msgCursor reads the fields of a message body of length n, of which b holds the first bytes
// (all of them for a whole message); the first error sticks. Reading stops without an error
// (more) at a field that goes on beyond b but fits in n.
type msgCursor struct {
	b    []byte
	n    int
	off  int
	err  error
	more bool
}

func (m *msgCursor) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf(format, args...)
	}
}

// going reports whether the fields read so far are well formed and all in b.
func (m *msgCursor) going() bool { return m.err == nil && !m.more }

// need reports whether the next k bytes are in b; a field longer than the message is an error.
func (m *msgCursor) need(k int) bool {
	switch {
	case !m.going():
		return false
	case k < 0 || m.n-m.off < k:
		m.fail("message shorter than its fields")
		return false
	case len(m.b)-m.off < k:
		m.more = true
		return false
	}
	return true
}

func (m *msgCursor) str() {
	if !m.going() {
		return
	}
	i := bytes.IndexByte(m.b[m.off:], 0)
	switch {
	case i >= 0:
		m.off += i + 1
	case len(m.b) < m.n:
		m.more = true
	default:
		m.fail("string without its terminating NUL")
	}
}

func (m *msgCursor) skip(k int) {
	if m.need(k) {
		m.off += k
	}
}

// values reads an Int16 count of values, each an Int32 length (-1: NULL) and that many bytes
// (Bind's parameters, FunctionCall's arguments).
func (m *msgCursor) values() {
	for k := m.count(); k > 0 && m.going(); k-- {
		if size := m.int32(); size > 0 {
			m.skip(int(size))
		} else if size < -1 {
			m.fail("invalid value length %d", size)
		}
	}
}

// count reads an Int16 count (PostgreSQL reads it unsigned).
func (m *msgCursor) count() int { return int(m.fixed(2)) }

func (m *msgCursor) int32() int32 { return int32(m.fixed(4)) }

// fixed reads a big-endian integer of k (2 or 4) bytes; 0 when it is not there.
func (m *msgCursor) fixed(k int) uint32 {
	if !m.need(k) {
		return 0
	}
	b := m.b[m.off : m.off+k]
	m.off += k
	if k == 2 {
		return uint32(binary.BigEndian.Uint16(b))
	}
	return binary.BigEndian.Uint32(b)
}
