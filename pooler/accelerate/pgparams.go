package accelerate

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// pgParams are a statement's bind parameters: text (or, for bytes, binary) with no declared
// type, so Postgres infers the type from the statement, exactly as node-postgres sends them.
type pgParams struct {
	values  [][]byte // nil: NULL
	formats []int16  // 1 for a binary value; nil when every value is text
}

// encodeParams converts the rendered arguments of a statement to bind parameters, following
// the argument types the plan gives (DateTime strings become timestamps, base64 strings of
// Bytes become binary, lists become array literals). The text values share one buffer.
func encodeParams(args []any, types []argType) (pgParams, error) {
	p := pgParams{values: make([][]byte, len(args))}
	text := make([]byte, 0, 16*len(args))
	for i, a := range args {
		var t argType
		if i < len(types) {
			t = types[i]
		}
		v, err := adaptArg(a, t)
		if err != nil {
			return pgParams{}, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		switch x := v.(type) {
		case nil, undefinedT:
			continue
		case []byte:
			p.values[i] = x
			if p.formats == nil {
				p.formats = make([]int16, len(args))
			}
			p.formats[i] = 1
			continue
		}
		start := len(text)
		if text, err = appendParamText(text, v); err != nil {
			return pgParams{}, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		// Capped: a value appended later never writes into this one (when text grows, the
		// values before keep the old array, whose bytes do not change).
		p.values[i] = text[start:len(text):len(text)]
	}
	return p, nil
}

// adaptArg applies the argument type to a value: list elements one by one, strings of
// datetime arguments parsed to a Date, Dates formatted for their database type, base64
// strings of bytes arguments decoded.
func adaptArg(v any, t argType) (any, error) {
	if v == nil {
		return nil, nil
	}
	if l, ok := v.([]any); ok && t.arity == "list" {
		out := make([]any, len(l))
		for i, e := range l {
			var err error
			if out[i], err = adaptArg(e, t); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if s, ok := v.(string); ok && t.scalarType == "datetime" {
		d, ok := parseJSDate(s)
		if !ok {
			return nil, userFacing("P2007", "Invalid input value: invalid DateTime "+strconv.Quote(s), nil)
		}
		v = d
	}
	if d, ok := v.(time.Time); ok {
		d = d.UTC()
		switch t.dbType {
		case "TIME", "TIMETZ":
			return formatTime(d), nil
		case "DATE":
			return d.Format("2006-01-02"), nil
		default:
			// The reference sends no zone and relies on a UTC session; the explicit offset
			// keeps timestamptz values right whatever the session's TimeZone is, and a
			// timestamp column ignores it.
			return formatDate(d) + " " + formatTime(d) + "+00:00", nil
		}
	}
	if s, ok := v.(string); ok && t.scalarType == "bytes" {
		return decodeBase64Lenient(s), nil
	}
	return v, nil
}

func formatDate(d time.Time) string {
	if y := d.Year(); y < 0 || y > 9999 {
		return fmt.Sprintf("%04d", y) + d.Format("-01-02")
	}
	return d.Format("2006-01-02")
}

// formatTime writes hh:mm:ss with milliseconds only when there are any.
func formatTime(d time.Time) string {
	s := d.Format("15:04:05")
	if ms := d.Nanosecond() / int(time.Millisecond); ms != 0 {
		s += fmt.Sprintf(".%03d", ms)
	}
	return s
}

// appendParamText appends the text of one adapted value (not NULL, not bytes) as node-postgres
// writes it: booleans "true"/"false", numbers as JavaScript prints them, arrays as array
// literals, objects as JSON.
func appendParamText(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return append(dst, x...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case float64:
		return append(dst, jsNumberString(x)...), nil
	case time.Time:
		return append(dst, formatDate(x.UTC())+" "+formatTime(x.UTC())+"+00:00"...), nil
	case []any:
		return appendArrayLiteral(dst, x)
	}
	return appendJSON(dst, v)
}

// appendArrayLiteral appends a Postgres array literal: NULL, nested arrays, bytes as \x hex,
// and every other element quoted (backslashes and quotes escaped).
func appendArrayLiteral(dst []byte, l []any) ([]byte, error) {
	dst = append(dst, '{')
	for i, e := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		switch x := e.(type) {
		case nil, undefinedT:
			dst = append(dst, "NULL"...)
		case []any:
			dst, err = appendArrayLiteral(dst, x)
		case []byte:
			dst = hex.AppendEncode(append(dst, `\\x`...), x)
		default:
			dst = append(dst, '"')
			start := len(dst)
			if dst, err = appendParamText(dst, x); err == nil && bytes.ContainsAny(dst[start:], `\"`) {
				text := append([]byte(nil), dst[start:]...)
				dst = dst[:start]
				for _, c := range text {
					if c == '\\' || c == '"' {
						dst = append(dst, '\\')
					}
					dst = append(dst, c)
				}
			}
			dst = append(dst, '"')
		}
		if err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// logParams is how a statement's arguments appear in a query log: JSON, with Buffers as
// base64 and Dates as ISO strings (the reference logs the arguments before they are adapted).
func logParams(args []any) string {
	s, err := jsonStringify(args)
	if err != nil {
		return "[]"
	}
	return s
}
