package accelerate

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// pgParam is one bind parameter: text (or, for bytes, binary) with no declared type, so
// Postgres infers the type from the statement, exactly as node-postgres sends them.
type pgParam struct {
	data   []byte // nil: NULL
	binary bool
}

// encodeParams converts the rendered arguments of a statement to bind parameters, following
// the argument types the plan gives (DateTime strings become timestamps, base64 strings of
// Bytes become binary, lists become array literals).
func encodeParams(args []any, types []argType) ([]pgParam, error) {
	out := make([]pgParam, len(args))
	for i, a := range args {
		var t argType
		if i < len(types) {
			t = types[i]
		}
		v, err := adaptArg(a, t)
		if err != nil {
			return nil, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		out[i], err = encodeParam(v)
		if err != nil {
			return nil, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
	}
	return out, nil
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

// encodeParam renders one adapted value as node-postgres would: Buffers binary, booleans
// "true"/"false", numbers as JavaScript prints them, arrays as array literals, objects as
// JSON.
func encodeParam(v any) (pgParam, error) {
	switch x := v.(type) {
	case nil, undefinedT:
		return pgParam{}, nil
	case []byte:
		return pgParam{data: x, binary: true}, nil
	case string:
		return pgParam{data: []byte(x)}, nil
	case bool:
		return pgParam{data: []byte(strconv.FormatBool(x))}, nil
	case float64:
		return pgParam{data: []byte(jsNumberString(x))}, nil
	case time.Time:
		return pgParam{data: []byte(formatDate(x.UTC()) + " " + formatTime(x.UTC()) + "+00:00")}, nil
	case []any:
		s, err := arrayLiteral(x)
		return pgParam{data: []byte(s)}, err
	}
	s, err := jsonStringify(v)
	return pgParam{data: []byte(s)}, err
}

// arrayLiteral writes a Postgres array literal: NULL, nested arrays, bytes as \x hex, and
// every other element quoted.
func arrayLiteral(l []any) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range l {
		if i > 0 {
			b.WriteByte(',')
		}
		switch x := e.(type) {
		case nil, undefinedT:
			b.WriteString("NULL")
		case []any:
			s, err := arrayLiteral(x)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		case []byte:
			b.WriteString(`\\x`)
			b.WriteString(hex.EncodeToString(x))
		default:
			p, err := encodeParam(x)
			if err != nil {
				return "", err
			}
			b.WriteByte('"')
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(string(p.data)))
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
	return b.String(), nil
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
