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

// Buffer sizes: a client's read buffer (held while it has work or waits on a goroutine between
// transactions; never while parked) and an upstream connection's buffer for what the server
// sends (kept with the connection). Messages larger than these are streamed through in pieces.
const (
	readBufSize     = 8 << 10
	upstreamBufSize = 16 << 10
)

// bufPool hands out read buffers while a client has work; a parked client holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) != readBufSize {
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

// msgReader frames client messages from a pooled buffer, filled with one read of whatever the
// client has sent. When the buffer is drained it can go back to the pool (release); a parked
// session waits for its next bytes with no buffer at all (waitParked reads them into hdr).
type msgReader struct {
	conn    net.Conn
	buf     *[]byte // nil while idle
	r, w    int
	keep    int     // fill keeps bytes from here on (a replay mark, see loop.go); -1: none
	big     *[]byte // body of a message larger than buf returned by next, freed by the next call
	hdr     [5]byte // first bytes of the next message, read by waitParked without a buffer
	hdrN    int
	maxBody int
	bytesIn int64
	raw     *rawSock // plain TCP: reads skip the scheduler's system-call bookkeeping
}

// read reads once from the client.
func (m *msgReader) read(b []byte) (int, error) {
	if m.raw = rawSockFor(m.raw, m.conn); m.raw != nil {
		return m.raw.Read(b)
	}
	return m.conn.Read(b)
}

// buffered reports whether unread bytes are waiting.
func (m *msgReader) buffered() bool { return m.w > m.r || m.hdrN > 0 }

// header returns the type and body length of the next message when its header is buffered.
func (m *msgReader) header() (typ byte, n int, ok bool) {
	if m.w-m.r < 5 {
		return 0, 0, false
	}
	b := (*m.buf)[m.r:]
	return b[0], int(int32(binary.BigEndian.Uint32(b[1:5]))) - 4, true
}

// complete reports whether a message of body length n is buffered whole.
func (m *msgReader) complete(n int) bool { return m.w-m.r >= 5+n }

// take consumes a buffered message of body length n and returns its body, valid until the next
// fill.
func (m *msgReader) take(n int) []byte {
	body := (*m.buf)[m.r+5 : m.r+5+n]
	m.r += 5 + n
	return body
}

// unread returns the buffered bytes not consumed yet.
func (m *msgReader) unread() []byte { return (*m.buf)[m.r:m.w] }

// consume drops n buffered bytes.
func (m *msgReader) consume(n int) { m.r += n }

// fill reads once from the client (blocking until something arrives), after the bytes already
// buffered; it moves them to the front of the buffer first when the room behind them is short.
func (m *msgReader) fill() error {
	if m.buf == nil {
		m.buf = getBuf()
		m.r, m.w = 0, 0
		m.keep = -1
	}
	b := *m.buf
	if m.hdrN > 0 {
		// Bytes a parked wait read before the buffer existed.
		m.w += copy(b[m.w:], m.hdr[:m.hdrN])
		m.hdrN = 0
		return nil
	}
	from := m.r
	if m.keep >= 0 && m.keep < from {
		from = m.keep
	}
	if len(b)-m.w < len(b)/4 && from > 0 {
		copy(b, b[from:m.w])
		m.w -= from
		m.r -= from
		if m.keep >= 0 {
			m.keep -= from
		}
	}
	if m.w == len(b) {
		// Full of kept bytes: give up the replay mark to make room.
		m.keep = -1
		copy(b, b[m.r:m.w])
		m.w -= m.r
		m.r = 0
	}
	k, err := m.read(b[m.w:])
	m.w += k
	m.bytesIn += int64(k)
	return readResult(k, err)
}

// readResult is a read's error for callers that only need bytes: nil when some arrived (an
// error comes again with the next read), io.ErrNoProgress for an empty read without one.
func readResult(k int, err error) error {
	if k > 0 {
		return nil
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// waitParked blocks, holding no buffer, until the client sends at least one byte (kept in hdr
// for the next fill) or the read fails.
func (m *msgReader) waitParked() error {
	k, err := m.conn.Read(m.hdr[:])
	m.hdrN = k
	m.bytesIn += int64(k)
	return readResult(k, err)
}

// release returns the read buffer to the pool when nothing is buffered.
func (m *msgReader) release() {
	if m.big != nil {
		putBig(m.big)
		m.big = nil
	}
	if m.buf != nil && m.r == m.w {
		putBuf(m.buf)
		m.buf = nil
		m.r, m.w = 0, 0
		m.keep = -1
	}
}

// next returns the next whole message (startup and authentication: small messages, read
// before the relay starts). The body is valid until the next call.
func (m *msgReader) next() (byte, []byte, error) {
	if m.big != nil {
		putBig(m.big)
		m.big = nil
	}
	for {
		typ, n, ok := m.header()
		if ok {
			if n < 0 || n > m.maxBody {
				return 0, nil, fmt.Errorf("%w: message %q of %d bytes (limit %d)", ErrProtocol, typ, n, m.maxBody)
			}
			if m.complete(n) {
				return typ, m.take(n), nil
			}
			if 5+n > len(*m.buf) {
				// Larger than the buffer: its own buffer.
				m.big = getBig(n)
				body := (*m.big)[:n]
				k := copy(body, (*m.buf)[m.r+5:m.w])
				m.r = m.w
				if _, err := io.ReadFull(m.conn, body[k:]); err != nil {
					return 0, nil, err
				}
				m.bytesIn += int64(n - k)
				return typ, body, nil
			}
		}
		if err := m.fill(); err != nil {
			if errors.Is(err, io.EOF) && m.buffered() {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
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

// msgWriter writes to the client: messages the pooler makes itself (encode + flush, or send)
// and bytes relayed from the upstream (write). mu serializes writers: the client loop, and in
// session mode the goroutine that relays notifications while the client is idle.
type msgWriter struct {
	mu       sync.Mutex
	conn     net.Conn
	buf      *[]byte
	out      []byte
	bytesOut int64
	raw      *rawSock // plain TCP: writes skip the scheduler's system-call bookkeeping
}

// writeConn writes b to the client. Callers hold mu.
func (w *msgWriter) writeConn(b []byte) (int, error) {
	if w.raw = rawSockFor(w.raw, w.conn); w.raw != nil {
		return w.raw.Write(b)
	}
	return w.conn.Write(b)
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

// flush writes buffered bytes; with release it returns the buffer to the pool. Callers hold mu.
func (w *msgWriter) flush(release bool) error {
	var err error
	if len(w.out) > 0 {
		_, err = w.writeConn(w.out)
		w.bytesOut += int64(len(w.out))
		w.out = w.out[:0]
	}
	if release && w.buf != nil {
		if cap(w.out) == readBufSize {
			*w.buf = w.out[:cap(w.out)]
			putBuf(w.buf)
		}
		w.buf, w.out = nil, nil
	}
	return err
}

// write sends relayed bytes and reports how many went out.
func (w *msgWriter) write(b []byte) (int, error) {
	w.mu.Lock()
	n, err := w.writeConn(b)
	w.bytesOut += int64(n)
	w.mu.Unlock()
	return n, err
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
	// A CancelRequest is 12 bytes and a key of up to 256 (protocol 3.2); pgx sends one with
	// no key after a connection fails during its login.
	minCancelPacket = 12
	maxCancelPacket = minCancelPacket + 256
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
		// PostgreSQL answers no CancelRequest, well formed or not, so a client learns nothing
		// from it; one without a process ID, or with a key longer than any, cancels nothing.
		if size := 8 + len(rest); size >= minCancelPacket && size <= maxCancelPacket {
			p.cancel.pid = binary.BigEndian.Uint32(rest)
			p.cancel.secret = append([]byte(nil), rest[4:]...)
		}
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
