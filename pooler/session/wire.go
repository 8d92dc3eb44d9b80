package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// MaxStartupBytes caps the startup packet (PostgreSQL's MAX_STARTUP_PACKET_LENGTH).
const MaxStartupBytes = 10_000

// maxAuthMessageBytes caps messages during authentication.
const maxAuthMessageBytes = 10_000

const readBufSize = 8 << 10

// bufPool hands out read/write buffers while a client has work; an idle client holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 { // let big one-off buffers go
		return
	}
	*b = (*b)[:cap(*b)]
	bufPool.Put(b)
}

// ErrProtocol marks a malformed or oversized client message; the session answers with a
// FATAL 08P01 and closes only that client.
var ErrProtocol = errors.New("protocol violation")

// protocolError is an ErrProtocol naming what was wrong; the client loop sends it as the FATAL.
func protocolError(msg string) error { return fmt.Errorf("%w: %s", ErrProtocol, msg) }

// msgReader frames client messages. While messages are pipelined it reads through an 8 KiB
// pooled buffer; whenever the buffer is drained it goes back to the pool and the next header
// is read straight into a 5-byte array, so a waiting client holds no buffer.
type msgReader struct {
	conn    net.Conn
	buf     *[]byte // nil while idle
	r, w    int
	big     *[]byte // body buffer of a message larger than buf, freed by the next call
	hdr     [5]byte
	maxBody int
	bytesIn int64

	hdrN     int   // bytes of hdr read so far (a read cut short by a deadline resumes here)
	hdrReady bool  // hdr holds a header read by readHeader
	hdrErr   error // the error readHeader got, returned by next
	hdrCut   bool  // next's last error came from the header read (resumable after a timeout)
}

// readHeader blocks for the next message header with no buffer held; next picks it up. A
// read that fails part-way keeps the bytes it got, so a timeout (a kick) loses nothing.
func (m *msgReader) readHeader() {
	for m.hdrN < len(m.hdr) {
		k, err := m.conn.Read(m.hdr[m.hdrN:])
		m.hdrN += k
		m.bytesIn += int64(k)
		if err != nil && m.hdrN < len(m.hdr) {
			if errors.Is(err, io.EOF) && m.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			m.hdrErr = err
			return
		}
	}
	m.hdrN = 0
	m.hdrReady = true
}

// buffered reports whether unread bytes are waiting (more pipelined messages).
func (m *msgReader) buffered() bool { return m.w > m.r }

// release returns the read buffer if nothing is buffered.
func (m *msgReader) release() {
	if m.big != nil {
		putBig(m.big)
		m.big = nil
	}
	if m.buf != nil && m.r == m.w {
		putBuf(m.buf)
		m.buf = nil
		m.r, m.w = 0, 0
	}
}

// next returns the next message type and body. The body is valid until the next call.
func (m *msgReader) next() (byte, []byte, error) {
	if m.big != nil {
		putBig(m.big)
		m.big = nil
	}
	if m.r == m.w {
		// Nothing buffered: never block holding a buffer. The header goes into a 5-byte array;
		// the buffer comes back once there is a body to read.
		m.r, m.w = 0, 0
		if m.buf != nil {
			putBuf(m.buf)
			m.buf = nil
		}
	}
	m.hdrCut = false
	if err := m.hdrErr; err != nil {
		m.hdrErr, m.hdrCut = nil, true
		return 0, nil, err
	}
	var typ byte
	var n int
	if m.buf == nil {
		if !m.hdrReady {
			m.readHeader()
			if err := m.hdrErr; err != nil {
				m.hdrErr, m.hdrCut = nil, true
				return 0, nil, err
			}
		}
		m.hdrReady = false
		typ = m.hdr[0]
		n = int(int32(binary.BigEndian.Uint32(m.hdr[1:]))) - 4
		m.buf = getBuf()
	} else {
		if err := m.fill(5); err != nil {
			return 0, nil, err
		}
		b := (*m.buf)[m.r:]
		typ = b[0]
		n = int(int32(binary.BigEndian.Uint32(b[1:5]))) - 4
		m.r += 5
	}
	if n < 0 || n > m.maxBody {
		return 0, nil, fmt.Errorf("%w: message %q of %d bytes (limit %d)", ErrProtocol, typ, n, m.maxBody)
	}
	if n <= len(*m.buf) {
		if err := m.fill(n); err != nil {
			return 0, nil, err
		}
		body := (*m.buf)[m.r : m.r+n]
		m.r += n
		return typ, body, nil
	}
	// A large message (COPY data, big Bind): its own buffer.
	m.big = getBig(n)
	body := (*m.big)[:n]
	k := copy(body, (*m.buf)[m.r:m.w])
	m.r += k
	if _, err := io.ReadFull(m.conn, body[k:]); err != nil {
		return 0, nil, err
	}
	m.bytesIn += int64(n - k)
	return typ, body, nil
}

// fill makes at least n bytes (n <= len(buf)) available at buf[r:].
func (m *msgReader) fill(n int) error {
	if m.w-m.r >= n {
		return nil
	}
	b := *m.buf
	if len(b)-m.r < n {
		copy(b, b[m.r:m.w])
		m.w -= m.r
		m.r = 0
	}
	for m.w-m.r < n {
		k, err := m.conn.Read(b[m.w:])
		m.w += k
		m.bytesIn += int64(k)
		if err != nil {
			if m.w-m.r >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && m.w > m.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

var bigPool = sync.Pool{}

func getBig(n int) *[]byte {
	if n <= 256<<10 {
		if b, ok := bigPool.Get().(*[]byte); ok && cap(*b) >= n {
			*b = (*b)[:cap(*b)]
			return b
		}
		b := make([]byte, 256<<10)
		return &b
	}
	b := make([]byte, n)
	return &b
}

func putBig(b *[]byte) {
	if cap(*b) == 256<<10 {
		bigPool.Put(b)
	}
}

// msgWriter batches outgoing messages in a pooled buffer; Flush writes them and, when asked,
// gives the buffer back so an idle client holds none.
type msgWriter struct {
	mu       sync.Mutex
	conn     net.Conn
	buf      *[]byte
	out      []byte
	bytesOut int64
}

// encode appends msg. Callers hold mu.
func (w *msgWriter) encode(msg pgproto3.BackendMessage) error {
	if w.buf == nil {
		w.buf = getBuf()
		w.out = (*w.buf)[:0]
	}
	var err error
	w.out, err = msg.Encode(w.out)
	return err
}

func (w *msgWriter) pending() int { return len(w.out) }

// flush writes buffered bytes; with release it returns the buffer to the pool. Callers hold mu.
func (w *msgWriter) flush(release bool) error {
	var err error
	if len(w.out) > 0 {
		_, err = w.conn.Write(w.out)
		w.bytesOut += int64(len(w.out))
		w.out = w.out[:0]
	}
	if release && w.buf != nil {
		if cap(w.out) <= 64<<10 {
			*w.buf = w.out[:cap(w.out)]
			putBuf(w.buf)
		}
		w.buf, w.out = nil, nil
	}
	return err
}

// send encodes msgs and flushes them at once, releasing the buffer.
func (w *msgWriter) send(msgs ...pgproto3.BackendMessage) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		if err := w.encode(m); err != nil {
			return err
		}
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err := w.flush(true)
	_ = w.conn.SetWriteDeadline(time.Time{})
	return err
}

// readStartupPacket reads one length-prefixed startup-phase packet (no type byte) straight from
// conn without reading ahead, so a TLS handshake can follow an SSLRequest.
func readStartupPacket(conn net.Conn) ([]byte, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(lenBuf[:]))) - 4
	if n < 4 || n > MaxStartupBytes-4 {
		return nil, fmt.Errorf("%w: startup packet of %d bytes", ErrProtocol, n+4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	return body, nil
}

// Startup packet codes.
const (
	codeCancel  = 80877102
	codeSSL     = 80877103
	codeGSSENC  = 80877104
	protocolMaj = 3
)

// startupPacket is a decoded startup-phase packet.
type startupPacket struct {
	code   uint32
	params map[string]string // StartupMessage
	order  []string          // parameter names in the order sent
	cancel struct {
		pid    uint32
		secret []byte
	}
}

// decodeStartupPacket parses the body of a startup-phase packet.
func decodeStartupPacket(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: short startup packet", ErrProtocol)
	}
	p := &startupPacket{code: binary.BigEndian.Uint32(body)}
	rest := body[4:]
	switch p.code {
	case codeSSL, codeGSSENC:
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: bad SSL/GSS request", ErrProtocol)
		}
		return p, nil
	case codeCancel:
		if len(rest) < 8 || len(rest) > 4+256 {
			return nil, fmt.Errorf("%w: bad cancel request", ErrProtocol)
		}
		p.cancel.pid = binary.BigEndian.Uint32(rest)
		p.cancel.secret = append([]byte(nil), rest[4:]...)
		return p, nil
	}
	if p.code>>16 != protocolMaj {
		return nil, fmt.Errorf("%w: unsupported frontend protocol %d.%d", ErrProtocol, p.code>>16, p.code&0xffff)
	}
	p.params = map[string]string{}
	for {
		k, r, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated startup parameter", ErrProtocol)
		}
		rest = r
		if k == "" {
			break
		}
		v, r, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated startup parameter %q", ErrProtocol, k)
		}
		rest = r
		if _, dup := p.params[k]; !dup {
			p.order = append(p.order, k)
		}
		p.params[k] = v
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after startup parameters", ErrProtocol)
	}
	return p, nil
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// cstringBytes is cstring without allocating.
func cstringBytes(b []byte) ([]byte, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// appendMsg frames a message: type, length, body.
func appendMsg(dst []byte, typ byte, body ...[]byte) []byte {
	n := 4
	for _, b := range body {
		n += len(b)
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	for _, b := range body {
		dst = append(dst, b...)
	}
	return dst
}
