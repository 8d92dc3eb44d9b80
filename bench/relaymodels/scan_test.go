//go:build linux

package main

import "testing"

func msg(typ byte, body string) []byte {
	n := 4 + len(body)
	return append([]byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestAnswerScannerCountsReadyForQuery: however the answer is split into reads, the scanner
// counts each ReadyForQuery once, at the read that completes it, with its status.
func TestAnswerScannerCountsReadyForQuery(t *testing.T) {
	answer := cat(msg('T', "rowdesc"), msg('D', "row"), msg('C', "SELECT 1"), msg('Z', "T"),
		msg('C', "COMMIT"), msg('Z', "I"))
	for _, tc := range []struct {
		name  string
		split []int // read boundaries
	}{
		{"one read", nil},
		{"byte by byte", func() []int {
			s := make([]int, 0, len(answer))
			for i := 1; i < len(answer); i++ {
				s = append(s, i)
			}
			return s
		}()},
		{"inside a header", []int{2, 7}},
		{"just before the last status byte", []int{len(answer) - 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sc answerScanner
			ready, prev := 0, 0
			for _, cut := range append(tc.split, len(answer)) {
				got := sc.feed(answer[prev:cut])
				ready += got
				if got > 0 && ready == 1 && sc.status != 'T' {
					t.Fatalf("first ReadyForQuery status %q, want 'T'", sc.status)
				}
				prev = cut
			}
			if ready != 2 || sc.status != 'I' {
				t.Fatalf("counted %d ReadyForQuery, last status %q; want 2 and 'I'", ready, sc.status)
			}
		})
	}
}

// TestRequests: only complete messages are sent, and each Query or Sync is owed one answer.
func TestRequests(t *testing.T) {
	q, p, b, e, s := msg('Q', "select 1\x00"), msg('P', "\x00x\x00\x00\x00"), msg('B', "bind"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")
	for _, tc := range []struct {
		name          string
		in            []byte
		wantN, answer int
	}{
		{"empty", nil, 0, 0},
		{"half a header", q[:3], 0, 0},
		{"half a body", q[:len(q)-1], 0, 0},
		{"one query", q, len(q), 1},
		{"two queries", cat(q, q), 2 * len(q), 2},
		{"extended batch", cat(p, b, e, s), len(p) + len(b) + len(e) + len(s), 1},
		{"batch without its Sync yet", cat(p, b, e), len(p) + len(b) + len(e), 0},
		{"complete then partial", cat(q, q[:4]), len(q), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, answers := requests(tc.in)
			if n != tc.wantN || answers != tc.answer {
				t.Fatalf("requests = %d, %d; want %d, %d", n, answers, tc.wantN, tc.answer)
			}
		})
	}
}
