package edge

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// typeMap resolves array types to their element types. It is only read after init, which is
// safe for concurrent use.
var typeMap = pgtype.NewMap()

// valueKind says how a column's text values become JSON in typed (non-raw) output.
type valueKind uint8

const (
	kindString valueKind = iota // JSON string (text, int8, numeric, timestamps, bytea, ...)
	kindBool                    // "t"/"f" → true/false
	kindNumber                  // int2, int4, oid, float4, float8 → JSON number
	kindJSON                    // json, jsonb → inlined
	kindArray                   // Postgres array → JSON array of its element kind
)

// columnKind decides, from a type OID, how values of that type are written. elem is the
// kind of an array's elements.
func columnKind(oid uint32) (kind, elem valueKind) {
	switch oid {
	case pgtype.BoolOID:
		return kindBool, 0
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.OIDOID, pgtype.Float4OID, pgtype.Float8OID:
		return kindNumber, 0
	case pgtype.JSONOID, pgtype.JSONBOID:
		return kindJSON, 0
	}
	if t, ok := typeMap.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok && ac.ElementType != nil {
			e, _ := columnKind(ac.ElementType.OID)
			if e == kindArray { // arrays of arrays do not exist in Postgres; be safe
				e = kindString
			}
			return kindArray, e
		}
	}
	return kindString, 0
}

// appendValue appends one text-format value as JSON of the given kind. A value that does not
// parse as its kind falls back to a JSON string, so output is always valid JSON.
func appendValue(dst, text []byte, kind, elem valueKind) []byte {
	switch kind {
	case kindBool:
		switch string(text) {
		case "t":
			return append(dst, "true"...)
		case "f":
			return append(dst, "false"...)
		}
	case kindNumber:
		if isJSONNumber(text) {
			return append(dst, text...)
		}
	case kindJSON:
		if json.Valid(text) {
			return append(dst, text...)
		}
	case kindArray:
		if out, ok := appendArrayJSON(dst, text, elem); ok {
			return out
		}
	}
	return appendJSONString(dst, text)
}

// isJSONNumber reports whether s is a valid JSON number; Postgres's NaN and Infinity are not.
func isJSONNumber(s []byte) bool {
	if len(s) == 0 || len(s) > 400 {
		return false
	}
	if s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return false
	}
	_, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		// Out-of-range values still are JSON numbers syntactically; only reject non-numbers.
		if !errors.Is(err, strconv.ErrRange) {
			return false
		}
	}
	return json.Valid(s)
}

// appendArrayJSON converts a Postgres array literal ("{1,2,NULL}", "{{a,b},{c,d}}",
// "[0:1]={x,y}") into a JSON array, converting elements by kind. ok is false if text is not a
// well-formed array literal.
func appendArrayJSON(dst, text []byte, elem valueKind) (out []byte, ok bool) {
	p := arrayParser{src: text, elem: elem}
	if len(text) > 0 && text[0] == '[' { // explicit bounds: skip "[lo:hi]...=" decoration
		eq := -1
		for i, c := range text {
			if c == '=' {
				eq = i
				break
			}
		}
		if eq < 0 {
			return dst, false
		}
		p.pos = eq + 1
	}
	start := len(dst)
	out, ok = p.parseArray(dst, 0)
	if !ok || p.pos != len(p.src) {
		return dst[:start], false
	}
	return out, true
}

type arrayParser struct {
	src  []byte
	pos  int
	elem valueKind
	buf  []byte // scratch for unescaped elements
}

func (p *arrayParser) parseArray(dst []byte, depth int) ([]byte, bool) {
	if depth > maxArrayDepth || p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return dst, false
	}
	p.pos++
	dst = append(dst, '[')
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return append(dst, ']'), true
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = p.parseElement(dst, depth); !ok {
			return dst, false
		}
		if p.pos >= len(p.src) {
			return dst, false
		}
		switch p.src[p.pos] {
		case ',', ';': // box arrays use ';' as the delimiter
			p.pos++
		case '}':
			p.pos++
			return append(dst, ']'), true
		default:
			return dst, false
		}
	}
}

func (p *arrayParser) parseElement(dst []byte, depth int) ([]byte, bool) {
	if p.pos >= len(p.src) {
		return dst, false
	}
	switch p.src[p.pos] {
	case '{':
		return p.parseArray(dst, depth+1)
	case '"':
		p.pos++
		p.buf = p.buf[:0]
		for p.pos < len(p.src) {
			c := p.src[p.pos]
			switch c {
			case '\\':
				if p.pos+1 >= len(p.src) {
					return dst, false
				}
				p.buf = append(p.buf, p.src[p.pos+1])
				p.pos += 2
			case '"':
				p.pos++
				return appendValue(dst, p.buf, p.elem, 0), true
			default:
				p.buf = append(p.buf, c)
				p.pos++
			}
		}
		return dst, false
	default:
		start := p.pos
		for p.pos < len(p.src) {
			c := p.src[p.pos]
			if c == ',' || c == ';' || c == '}' {
				break
			}
			p.pos++
		}
		word := p.src[start:p.pos]
		if len(word) == 0 {
			return dst, false
		}
		if len(word) == 4 && (word[0]|0x20) == 'n' && (word[1]|0x20) == 'u' && (word[2]|0x20) == 'l' && (word[3]|0x20) == 'l' {
			return append(dst, "null"...), true
		}
		return appendValue(dst, word, p.elem, 0), true
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, so the output is
// always valid JSON whatever the database sends.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
