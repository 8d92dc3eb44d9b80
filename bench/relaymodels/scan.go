//go:build linux

package main

import "encoding/binary"

// answerScanner follows message boundaries in what an upstream sends, across reads, and counts
// the ReadyForQuery messages that end its answers.
type answerScanner struct {
	remain int     // body bytes of the current message still to come
	hdr    [5]byte // a header split across reads
	nh     int
	typ    byte
	status byte // transaction status of the last ReadyForQuery: 'I', 'T' or 'E'
}

// feed takes the next bytes read from the upstream and returns how many ReadyForQuery messages
// they completed.
func (s *answerScanner) feed(b []byte) int {
	ready := 0
	for len(b) > 0 {
		if s.remain == 0 && s.nh < 5 {
			k := copy(s.hdr[s.nh:], b)
			s.nh += k
			b = b[k:]
			if s.nh < 5 {
				break
			}
			s.typ = s.hdr[0]
			s.remain = int(binary.BigEndian.Uint32(s.hdr[1:])) - 4
		}
		k := min(s.remain, len(b))
		s.remain -= k
		if s.remain == 0 {
			if s.typ == 'Z' && k > 0 {
				s.status = b[k-1]
				ready++
			}
			s.nh = 0
		}
		b = b[k:]
	}
	return ready
}

// requests reports the length of the complete messages at the start of b and how many
// ReadyForQuery answers they ask for (one per Query and per Sync).
func requests(b []byte) (n, answers int) {
	for len(b)-n >= 5 {
		l := 1 + int(binary.BigEndian.Uint32(b[n+1:]))
		if l < 5 || len(b)-n < l {
			break
		}
		if b[n] == 'Q' || b[n] == 'S' {
			answers++
		}
		n += l
	}
	return n, answers
}
