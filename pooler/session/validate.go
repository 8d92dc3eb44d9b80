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
// target, a format count that does not match) is left to PostgreSQL.
func checkMessage(typ byte, body []byte) error {
	m := msgCursor{b: body}
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
		for n := m.count(); n > 0 && m.err == nil; n-- {
			if size := m.int32(); size > 0 {
				m.skip(int(size))
			} else if size < -1 {
				m.fail("invalid parameter length %d", size)
			}
		}
		m.skip(2 * m.count())
	case 'E': // portal, row limit
		m.str()
		m.skip(4)
	case 'D', 'C': // 'S' or 'P', name
		m.skip(1)
		m.str()
	case 'S', 'H': // no body
	default:
		return nil // F, COPY messages: left to PostgreSQL
	}
	if m.err == nil && m.off != len(body) {
		m.fail("%d bytes left over", len(body)-m.off)
	}
	if m.err != nil {
		return protocolError(fmt.Sprintf("invalid %q message: %v", typ, m.err))
	}
	return nil
}

// msgCursor reads the fields of a message body; the first error sticks.
type msgCursor struct {
	b   []byte
	off int
	err error
}

func (m *msgCursor) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf(format, args...)
	}
}

func (m *msgCursor) str() {
	if m.err != nil {
		return
	}
	i := bytes.IndexByte(m.b[m.off:], 0)
	if i < 0 {
		m.fail("string without its terminating NUL")
		return
	}
	m.off += i + 1
}

func (m *msgCursor) skip(n int) {
	if m.err != nil {
		return
	}
	if n < 0 || len(m.b)-m.off < n {
		m.fail("message shorter than its fields")
		return
	}
	m.off += n
}

// count reads an Int16 count (PostgreSQL reads it unsigned).
func (m *msgCursor) count() int {
	if m.err != nil || len(m.b)-m.off < 2 {
		m.fail("message shorter than its fields")
		return 0
	}
	n := int(binary.BigEndian.Uint16(m.b[m.off:]))
	m.off += 2
	return n
}

func (m *msgCursor) int32() int32 {
	if m.err != nil || len(m.b)-m.off < 4 {
		m.fail("message shorter than its fields")
		return 0
	}
	n := int32(binary.BigEndian.Uint32(m.b[m.off:]))
	m.off += 4
	return n
}
