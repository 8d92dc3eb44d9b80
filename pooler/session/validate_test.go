package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t *testing.T, m pgproto3.FrontendMessage) (byte, []byte) {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b[0], b[5:]
}

// TestCheckMessage: what pgproto3 (every driver's layout) encodes passes; truncated, padded or
// unterminated bodies are protocol errors.
func TestCheckMessage(t *testing.T) {
	valid := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "select 1"},
		&pgproto3.Query{String: ""},
		&pgproto3.Parse{Name: "s1", Query: "select $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Parse{Query: "select 1"},
		&pgproto3.Bind{DestinationPortal: "", PreparedStatement: "s1", ParameterFormatCodes: []int16{1},
			Parameters: [][]byte{{0, 0, 0, 1}, nil, {}}, ResultFormatCodes: []int16{0, 1}},
		&pgproto3.Bind{},
		&pgproto3.Execute{Portal: "", MaxRows: 0},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
		&pgproto3.Close{ObjectType: 'P', Name: ""},
		&pgproto3.Sync{},
		&pgproto3.Flush{},
		&pgproto3.CopyData{Data: []byte("anything")},
		&pgproto3.CopyDone{},
		&pgproto3.CopyFail{Message: "client gave up"},
		&pgproto3.FunctionCall{Function: 1598, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 7}, nil},
			ResultFormatCode: 1},
		&pgproto3.FunctionCall{Function: 1598},
	}
	for _, m := range valid {
		typ, body := encode(t, m)
		if err := checkMessage(typ, body); err != nil {
			t.Errorf("%T rejected: %v", m, err)
		}
		// Every strict prefix of a message with fields is malformed, and so is one extra byte.
		if typ == 'd' || typ == 'S' || typ == 'H' || typ == 'c' {
			continue
		}
		for cut := 0; cut < len(body); cut++ {
			if checkMessage(typ, body[:cut]) == nil {
				t.Errorf("%T cut to %d of %d bytes accepted", m, cut, len(body))
			}
		}
		if err := checkMessage(typ, append(append([]byte(nil), body...), 'x')); !errors.Is(err, ErrProtocol) {
			t.Errorf("%T with a byte left over: %v", m, err)
		}
	}
	for _, tt := range []struct {
		typ  byte
		body string
	}{
		{'Q', "select 1"},         // no NUL
		{'Q', "select 1\x00\x00"}, // left over
		{'S', "x"},                // Sync has no body
		{'B', "\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"}, // parameter length -2
		{'E', "\x00\x00\x00"}, // row limit cut
		{'c', "x"},            // CopyDone has no body
		{'F', "\x00\x00\x06\x3e\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"}, // argument length -2
	} {
		if err := checkMessage(tt.typ, []byte(tt.body)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q %q: %v, want a protocol error", tt.typ, tt.body, err)
		}
	}
}

// TestCheckMessageAllocatesNothing: the check runs for every forwarded message, so a
// well-formed one costs no allocation.
func TestCheckMessageAllocatesNothing(t *testing.T) {
	typ, body := encode(t, &pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{{0, 0, 0, 1}, nil}, ResultFormatCodes: []int16{1}})
	qtyp, query := encode(t, &pgproto3.Query{String: "select 1"})
	if n := testing.AllocsPerRun(100, func() {
		if checkMessage(typ, body) != nil || checkMessage(qtyp, query) != nil {
			t.Fatal("rejected")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// TestCheckMessageStart: a message streamed in pieces is checked as far as its first bytes go;
// a field that runs on past them is not an error, one that runs past the message is.
func TestCheckMessageStart(t *testing.T) {
	long := strings.Repeat("x", 20_000)
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "select '" + long + "'"},
		&pgproto3.Parse{Name: "s1", Query: "select '" + long + "'", ParameterOIDs: []uint32{25}},
		&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte(long)}},
		&pgproto3.Execute{Portal: long},
	} {
		typ, body := encode(t, m)
		for _, cut := range []int{0, 1, 10, 1024, len(body) - 1} {
			if err := checkMessageStart(typ, body[:cut], len(body)); err != nil {
				t.Errorf("%T: the first %d of %d bytes rejected: %v", m, cut, len(body), err)
			}
		}
	}
	for _, tt := range []struct {
		typ    byte
		prefix string
		n      int
	}{
		{'Q', "select 1\x00trailing", 20_000},                      // the string ends early
		{'P', "s\x00select 1\x00\x00\x01\x00\x00\x00\x19", 20_000}, // one parameter type, then more bytes
		{'B', "\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe", 20_000},  // parameter length -2
		{'B', "\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00", 20_000},  // a parameter longer than the message
	} {
		if err := checkMessageStart(tt.typ, []byte(tt.prefix), tt.n); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q %q of %d: %v, want a protocol error", tt.typ, tt.prefix, tt.n, err)
		}
	}
}
