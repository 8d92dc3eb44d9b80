package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/pool"
)

// fuzzProxy is a proxy whose upstream is unreachable: every message that needs a connection
// gets the query-wait error, which exercises the session state machine without PostgreSQL.
func fuzzProxy(t testing.TB) (*Proxy, string) {
	key := "ep_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuz"
	salt := []byte("0123456789abcdef")
	v, err := apikey.NewSCRAMVerifier(key, salt, 16)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := auth.NewKeyring([]config.Key{{Name: "fuzz", Verifiers: []config.Verifier{{SCRAM: v.String(), SHA256: apikey.Digest(key)}}}})
	if err != nil {
		t.Fatal(err)
	}
	p := pool.New(pool.Settings{Size: 1, QueryWaitTimeout: time.Millisecond, ConnectTimeout: time.Millisecond},
		pool.Options{Connect: func(context.Context) (*pgconn.PgConn, error) { return nil, errors.New("no upstream in fuzzing") }})
	t.Cleanup(p.Close)
	px := NewProxy(p, &Runtime{Keyring: ring, Database: "app", PreferCleartext: true, AllowCleartextWithoutTLS: true,
		MaxClients: 100, AuthTimeout: time.Second, IdleTransactionTimeout: time.Second, MaxMessageBytes: 1 << 16,
		PreparedPerConn: 8}, slog.New(slog.DiscardHandler))
	px.params.Store(&[]serverParam{{"server_version", "15"}})
	return px, key
}

func startupBytes(user, db string) []byte {
	body := []byte{0, 3, 0, 0}
	body = append(body, "user\x00"+user+"\x00database\x00"+db+"\x00\x00"...)
	return append([]byte{0, 0, 0, byte(len(body) + 4)}, body...)
}

func passwordBytes(pw string) []byte {
	return appendMsg(nil, 'p', []byte(pw), zero)
}

// FuzzClientMessages feeds arbitrary bytes to the client message decoder: first as a startup
// packet, then as the message stream of an authenticated session. Nothing may panic or hang,
// and a decoded Parse must re-encode to the same bytes.
func FuzzClientMessages(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dselect 1\x00"))
	f.Add(appendParse(nil, &stmtDef{serverName: "s1", key: "select $1\x00\x00\x01\x00\x00\x00\x17"}))
	f.Add([]byte("P\x00\x00\x00\x08s\x00q\x00S\x00\x00\x00\x04"))
	f.Add([]byte("B\x00\x00\x00\x0c\x00s1\x00\x00\x00\x00\x00\x00D\x00\x00\x00\x08Ss1\x00C\x00\x00\x00\x08Ss1\x00S\x00\x00\x00\x04X\x00\x00\x00\x04"))
	f.Add([]byte("Q\x7f\xff\xff\xff"))
	f.Add([]byte("d\x00\x00\x00\x05xc\x00\x00\x00\x04H\x00\x00\x00\x04"))
	f.Add(startupBytes("fuzz", "app"))
	px, key := fuzzProxy(f)
	prefix := append(startupBytes("fuzz", "app"), passwordBytes(key)...)

	f.Fuzz(func(t *testing.T, data []byte) {
		// 1. As a startup packet body.
		_, _ = decodeStartupPacket(data)

		// 2. Framed messages through msgReader, each through its decoder.
		r := msgReader{conn: &bytesConn{Reader: bytes.NewReader(data)}, maxBody: 1 << 16}
		for range 1000 {
			typ, body, err := r.next()
			if err != nil {
				break
			}
			switch typ {
			case 'P':
				name, key, err := splitParse(body)
				if err == nil {
					again := appendParse(nil, &stmtDef{serverName: string(name), key: string(key)})
					if !bytes.Equal(again[5:], body) {
						t.Fatalf("Parse re-encodes differently:\n% x\n% x", again[5:], body)
					}
				}
			case 'Q':
				if q, _, ok := cstringBytes(body); ok {
					_ = resetsStatements(q)
				}
			case 'B', 'D', 'C':
				_, _, _ = cstringBytes(body)
			}
		}
		r.release()

		// 3. The real session on an authenticated connection.
		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- px.ServeConn(context.Background(), server, Options{}) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write(prefix)
		_, _ = client.Write(data)
		client.Close()
		select {
		case err := <-done:
			_ = err // garbage input ends sessions with errors; only hangs and panics fail
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after the client closed")
		}
	})
}

// bytesConn is a net.Conn reading from a byte slice.
type bytesConn struct {
	*bytes.Reader
	net.Conn
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }
