package accelerate

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON in and out with JavaScript's semantics: objects keep their key order (records),
// numbers are float64, and output matches JSON.stringify byte for byte for the values the
// interpreter produces.

// maxJSONDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxJSONDepth = 512

// parseJSON parses one JSON document.
func parseJSON(data []byte) (any, error) {
	p := jsonParser{data: data}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

type jsonParser struct {
	data []byte
	pos  int
	// deferKey names a member of the top-level object that is checked but not built;
	// deferred is its raw text (parseJSONDeferring). known, when not nil, returns the length
	// of a text already known to be a JSON value that its argument starts with (0 if none):
	// that much is taken as the member's text without checking it again.
	deferKey string
	deferred []byte
	known    func([]byte) int
}

// parseJSONDeferring parses a JSON document whose top-level object has a member key that the
// caller wants as raw text (to look it up in a cache before building it). That member is
// validated (or found by known), left out of the returned record, and returned as raw.
func parseJSONDeferring(data []byte, key string, known func([]byte) int) (top any, raw []byte, err error) {
	p := jsonParser{data: data, deferKey: key, known: known}
	p.skipSpace()
	if top, err = p.value(0); err != nil {
		return nil, nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, nil, p.errorf("unexpected data after the JSON value")
	}
	return top, p.deferred, nil
}

// knownValue is the length of the known JSON text at the parser's position, or 0.
func (p *jsonParser) knownValue() int {
	if p.known == nil {
		return 0
	}
	return p.known(p.data[p.pos:])
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("nested too deeply")
	}
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return nil, p.errorf("unexpected character %q", c)
	}
}

// skip checks one value and moves past it without building it.
func (p *jsonParser) skip(depth int) error {
	if depth > maxJSONDepth {
		return p.errorf("nested too deeply")
	}
	if p.pos >= len(p.data) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; c {
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		p.pos++
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == closing {
			p.pos++
			return nil
		}
		for {
			p.skipSpace()
			if c == '{' {
				if p.pos >= len(p.data) || p.data[p.pos] != '"' {
					return p.errorf("expected a string key")
				}
				if err := p.skipString(); err != nil {
					return err
				}
				p.skipSpace()
				if p.pos >= len(p.data) || p.data[p.pos] != ':' {
					return p.errorf("expected ':'")
				}
				p.pos++
				p.skipSpace()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.pos >= len(p.data) {
				return p.errorf("unexpected end of input")
			}
			switch p.data[p.pos] {
			case ',':
				p.pos++
			case closing:
				p.pos++
				return nil
			default:
				return p.errorf("expected ',' or '%c'", closing)
			}
		}
	case '"':
		return p.skipString()
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return p.scanNumber()
	default:
		_, err := p.value(depth) // literals, and the error for anything else
		return err
	}
}

// skipString checks a string and moves past it.
func (p *jsonParser) skipString() error {
	p.pos++
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			p.pos++
			return nil
		case c < 0x20:
			return p.errorf("control character in string")
		case c == '\\':
			p.pos++
			if p.pos >= len(p.data) {
				return p.errorf("unterminated string")
			}
			switch p.data[p.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.pos++
			case 'u':
				p.pos++
				if _, ok := p.hex4(); !ok {
					return p.errorf("invalid \\u escape")
				}
			default:
				return p.errorf("invalid escape")
			}
		default:
			p.pos++
		}
	}
	return p.errorf("unterminated string")
}

func (p *jsonParser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.errorf("invalid literal")
	}
	p.pos += len(word)
	return nil
}

func (p *jsonParser) object(depth int) (any, error) {
	p.pos++ // {
	r := newRecord(8)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return r, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("expected a string key")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.pos++
		p.skipSpace()
		if depth == 0 && p.deferKey != "" && key == p.deferKey {
			start := p.pos
			if n := p.knownValue(); n > 0 {
				p.pos += n
			} else if err := p.skip(depth + 1); err != nil {
				return nil, err
			}
			p.deferred = p.data[start:p.pos]
		} else {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			r.set(key, v)
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return r, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array(depth int) (any, error) {
	p.pos++ // [
	out := []any{}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return out, nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return out, nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

func (p *jsonParser) number() (any, error) {
	start := p.pos
	if err := p.scanNumber(); err != nil {
		return nil, err
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range is ±Infinity or 0, as in JavaScript
		return nil, p.errorf("invalid number")
	}
	return f, nil
}

// scanNumber checks a number's syntax and moves past it.
func (p *jsonParser) scanNumber() error {
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return p.errorf("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	return nil
}

func (p *jsonParser) str() (string, error) {
	p.pos++ // "
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			if !utf8.ValidString(s) {
				return toValidUTF8(s), nil
			}
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return toValidUTF8(string(buf)), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if r2, ok2 := p.peekLowSurrogate(); ok2 {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						buf = utf8.AppendRune(buf, d)
						continue
					}
				}
				r = utf8.RuneError // a lone surrogate cannot be held in a Go string
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", p.errorf("invalid escape")
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}

func (p *jsonParser) peekLowSurrogate() (rune, bool) {
	if len(p.data)-p.pos < 6 || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
		return 0, false
	}
	save := p.pos
	p.pos += 2
	r, ok := p.hex4()
	if !ok || r < 0xDC00 || r > 0xDFFF {
		p.pos = save
		return 0, false
	}
	return r, true
}

func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		out = append(out, r)
	}
	return string(out)
}

// appendJSON writes v as JSON.stringify would after the reference's result normalisation:
// tagged values in their canonical form, Buffers as base64 strings, Dates as ISO strings.
// undefined writes null; record fields holding undefined are left out.
func appendJSON(dst []byte, v any) ([]byte, error) { return appendJSONAs(dst, v, false) }

// appendKeyJSON is JSON.stringify of a record key's values, where a Buffer is written as Node
// writes it ({"type":"Buffer","data":[...]}).
func appendKeyJSON(dst []byte, v any) ([]byte, error) { return appendJSONAs(dst, v, true) }

func appendJSONAs(dst []byte, v any, bufferObjects bool) ([]byte, error) {
	switch x := v.(type) {
	case nil, undefinedT:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(dst, "null"...), nil
		}
		if i := int64(x); float64(i) == x && i > -1e15 && i < 1e15 {
			return strconv.AppendInt(dst, i, 10), nil // an integer (-0 included, written 0)
		}
		return append(dst, jsNumberString(x)...), nil
	case string:
		return appendJSONString(dst, x), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendJSONAs(dst, e, bufferObjects); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case *record:
		dst = append(dst, '{')
		first := true
		for _, f := range jsKeyOrder(x.fields) {
			if f.value == any(undefined) {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, f.name)
			dst = append(dst, ':')
			var err error
			if dst, err = appendJSONAs(dst, f.value, bufferObjects); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case time.Time:
		return append(appendJSISOString(append(dst, '"'), x), '"'), nil
	case []byte:
		if bufferObjects {
			dst = append(dst, `{"type":"Buffer","data":[`...)
			for i, b := range x {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendInt(dst, int64(b), 10)
			}
			return append(dst, "]}"...), nil
		}
		return appendJSONString(dst, base64.StdEncoding.EncodeToString(x)), nil
	case tagged:
		dst = append(dst, `{"$type":`...)
		dst = appendJSONString(dst, x.typ)
		dst = append(dst, `,"value":`...)
		switch v, isString := x.value.(string); {
		case x.typ == tagBigInt && isString:
			return append(appendJSONString(dst, v), '}'), nil
		case x.typ == tagDateTime:
			if isString { // most are strings read from timestamp columns
				if out, ok := appendUTCDateTime(append(dst, '"'), v); ok {
					return append(out, '"', '}'), nil
				}
			}
			d, err := toDate(x.value)
			if err != nil {
				return dst, err
			}
			return append(appendJSISOString(append(dst, '"'), d), '"', '}'), nil
		}
		s, err := x.normalized()
		if err != nil {
			return dst, err
		}
		dst = appendJSONString(dst, s)
		return append(dst, '}'), nil
	}
	return dst, fmt.Errorf("cannot encode %T as JSON", v)
}

// jsKeyOrder returns fields in JavaScript's property order: keys that are array indices
// ("0", "17") first in ascending numeric order, then the others in insertion order.
func jsKeyOrder(fields []field) []field {
	n := 0
	for _, f := range fields {
		if _, ok := arrayIndex(f.name); ok {
			n++
		}
	}
	if n == 0 {
		return fields
	}
	out := make([]field, 0, len(fields))
	for _, f := range fields {
		if _, ok := arrayIndex(f.name); ok {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := arrayIndex(out[i].name)
		b, _ := arrayIndex(out[j].name)
		return a < b
	})
	for _, f := range fields {
		if _, ok := arrayIndex(f.name); !ok {
			out = append(out, f)
		}
	}
	return out
}

// arrayIndex reports whether key is a canonical array index (no sign, no leading zero,
// below 2^32-1).
func arrayIndex(key string) (uint64, bool) {
	if key == "" || len(key) > 10 || key[0] < '0' || key[0] > '9' || (len(key) > 1 && key[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(key, 10, 64)
	if err != nil || n >= 1<<32-1 {
		return 0, false
	}
	return n, true
}

const hexDigits = "0123456789abcdef"

// plainWord reports whether none of the eight bytes of w needs escaping in a JSON string: no
// byte is below 0x20, '"' or '\\' (the "has a zero byte" trick on w, w^'"' and w^'\\', whose
// answer is exact for whether any byte matches).
func plainWord(w string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
	q, b := x^(ones*'"'), x^(ones*'\\')
	return ((x-ones*0x20)&^x|(q-ones)&^q|(b-ones)&^b)&highs == 0
}

// appendJSONString quotes s as JSON.stringify does: only '"', '\\' and control characters are
// escaped (no HTML escaping, U+2028 left as is).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if i+8 <= len(s) && plainWord(s[i:i+8]) {
			i += 7
			continue
		}
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// maxRewrittenKeys bounds the keys of one object that rewrite compares against each other;
// a larger object is built instead.
const maxRewrittenKeys = 32

// rewrite appends the value at the parser's position as JSON.stringify writes it after
// JSON.parse: no white space, strings escaped its way, numbers as JavaScript prints them. It
// reports false, for the caller to build the value instead, for an object JavaScript would
// reorder (a key that is an array index, a repeated key) and for anything that does not parse.
func (p *jsonParser) rewrite(dst []byte, depth int) ([]byte, bool) {
	if depth > maxJSONDepth || p.pos >= len(p.data) {
		return dst, false
	}
	switch c := p.data[p.pos]; c {
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		dst = append(dst, c)
		p.pos++
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == closing {
			p.pos++
			return append(dst, closing), true
		}
		var seen [8]string
		keys := seen[:0] // of an object, up to maxRewrittenKeys
		for {
			p.skipSpace()
			if c == '{' {
				if p.pos >= len(p.data) || p.data[p.pos] != '"' {
					return dst, false
				}
				key, err := p.str()
				if _, isIndex := arrayIndex(key); err != nil || isIndex || len(keys) == maxRewrittenKeys || slices.Contains(keys, key) {
					return dst, false
				}
				keys = append(keys, key)
				dst = append(appendJSONString(dst, key), ':')
				p.skipSpace()
				if p.pos >= len(p.data) || p.data[p.pos] != ':' {
					return dst, false
				}
				p.pos++
				p.skipSpace()
			}
			var ok bool
			if dst, ok = p.rewrite(dst, depth+1); !ok {
				return dst, false
			}
			p.skipSpace()
			if p.pos >= len(p.data) {
				return dst, false
			}
			switch p.data[p.pos] {
			case ',':
				dst = append(dst, ',')
				p.pos++
			case closing:
				p.pos++
				return append(dst, closing), true
			default:
				return dst, false
			}
		}
	case '"':
		s, err := p.str()
		return appendJSONString(dst, s), err == nil
	case 't':
		return append(dst, "true"...), p.literal("true") == nil
	case 'f':
		return append(dst, "false"...), p.literal("false") == nil
	case 'n':
		return append(dst, "null"...), p.literal("null") == nil
	}
	v, err := p.number()
	if err != nil {
		return dst, false
	}
	dst, err = appendJSON(dst, v)
	return dst, err == nil
}

// jsonStringify is JSON.stringify(v) as a string (safeJsonStringify: Buffers as base64).
func jsonStringify(v any) (string, error) {
	b, err := appendJSON(nil, v)
	return string(b), err
}

// reformatJSON is JSON.stringify(JSON.parse(s)). Most documents (a Json column's value) are
// rewritten token by token; one that JavaScript would reorder (an object with a key that is an
// array index, or a repeated key) or that does not parse is built and written.
func reformatJSON(s string) (string, error) {
	p := jsonParser{data: []byte(s)}
	p.skipSpace()
	if out, ok := p.rewrite(make([]byte, 0, len(s)), 0); ok {
		if p.skipSpace(); p.pos == len(p.data) {
			return string(out), nil
		}
	}
	v, err := parseJSON([]byte(s))
	if err != nil {
		return "", err
	}
	return jsonStringify(v)
}
