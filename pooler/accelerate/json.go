package accelerate

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
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
	// deferred is its raw text (parseJSONDeferring).
	deferKey string
	deferred []byte
}

// parseJSONDeferring parses a JSON document whose top-level object has a member key that the
// caller wants as raw text (to look it up in a cache before building it). That member is
// validated, left out of the returned record, and returned as raw.
func parseJSONDeferring(data []byte, key string) (top any, raw []byte, err error) {
	p := jsonParser{data: data, deferKey: key}
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
	default:
		_, err := p.value(depth) // literals and numbers allocate nothing worth avoiding
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
			if err := p.skip(depth + 1); err != nil {
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
		return nil, p.errorf("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range is ±Infinity or 0, as in JavaScript
		return nil, p.errorf("invalid number")
	}
	return f, nil
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
		return appendJSONString(dst, jsISOString(x)), nil
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
		s, err := x.normalized()
		if err != nil {
			return dst, err
		}
		dst = append(dst, `{"$type":`...)
		dst = appendJSONString(dst, x.typ)
		dst = append(dst, `,"value":`...)
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

// appendJSONString quotes s as JSON.stringify does: only '"', '\\' and control characters are
// escaped (no HTML escaping, U+2028 left as is).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
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

// jsonStringify is JSON.stringify(v) as a string (safeJsonStringify: Buffers as base64).
func jsonStringify(v any) (string, error) {
	b, err := appendJSON(nil, v)
	return string(b), err
}

// reformatJSON is JSON.stringify(JSON.parse(s)).
func reformatJSON(s string) (string, error) {
	v, err := parseJSON([]byte(s))
	if err != nil {
		return "", err
	}
	return jsonStringify(v)
}
