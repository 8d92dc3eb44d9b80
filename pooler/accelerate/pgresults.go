package accelerate

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Result values are read from Postgres's text format into the values Prisma's pg driver
// adapter produces: int2/int4/oid and floats as numbers, int8 and numeric as strings, bytea as
// bytes, json as its text, timestamps as ISO strings with an explicit UTC offset, arrays as
// arrays of those. Raw queries also report each column's type name.

// Type OIDs of the built-in types the adapter knows.
const (
	oidBool         = 16
	oidBytea        = 17
	oidName         = 19
	oidInt8         = 20
	oidInt2         = 21
	oidInt4         = 23
	oidText         = 25
	oidOID          = 26
	oidJSON         = 114
	oidXML          = 142
	oidJSONArray    = 199
	oidCIDR         = 650
	oidCIDRArray    = 651
	oidFloat4       = 700
	oidFloat8       = 701
	oidMoney        = 790
	oidMoneyArray   = 791
	oidInet         = 869
	oidBoolArray    = 1000
	oidByteaArray   = 1001
	oidCharArray    = 1002
	oidInt2Array    = 1005
	oidInt4Array    = 1007
	oidTextArray    = 1009
	oidBPCharArray  = 1014
	oidVarcharArray = 1015
	oidInt8Array    = 1016
	oidFloat4Array  = 1021
	oidFloat8Array  = 1022
	oidOIDArray     = 1028
	oidInetArray    = 1041
	oidBPChar       = 1042
	oidVarchar      = 1043
	oidDate         = 1082
	oidTime         = 1083
	oidTimestamp    = 1114
	oidTimestampArr = 1115
	oidDateArray    = 1182
	oidTimeArray    = 1183
	oidTimestamptz  = 1184
	oidTstzArray    = 1185
	oidTimetz       = 1266
	oidBit          = 1560
	oidBitArray     = 1561
	oidVarbit       = 1562
	oidVarbitArray  = 1563
	oidNumericArray = 1231
	oidNumeric      = 1700
	oidXMLArray     = 143
	oidUUID         = 2950
	oidUUIDArray    = 2951
	oidJSONB        = 3802
	oidJSONBArray   = 3807

	firstUserOID = 16384 // enums and other user-defined types are read as text
)

// columnDecoder reads one column's values.
type columnDecoder struct {
	typeName string // raw query column type: int, bigint, string, datetime-array, ...
	decode   func(text string) (any, error)
}

// pgTypeNames names the built-in types for the "unsupported column type" error.
var pgTypeNames = map[uint32]string{
	18: "char", 22: "int2vector", 24: "regproc", 27: "tid", 28: "xid", 29: "cid", 30: "oidvector",
	600: "point", 601: "lseg", 602: "path", 603: "box", 604: "polygon", 628: "line", 705: "unknown",
	718: "circle", 774: "macaddr8", 829: "macaddr", 1033: "aclitem", 1186: "interval", 1790: "refcursor",
	2202: "regprocedure", 2203: "regoper", 2204: "regoperator", 2205: "regclass", 2206: "regtype",
	2249: "record", 2275: "cstring", 2278: "void", 2970: "txid_snapshot", 3220: "pg_lsn", 3614: "tsvector",
	3615: "tsquery", 3734: "regconfig", 3769: "regdictionary", 3904: "int4range", 3906: "numrange",
	3908: "tsrange", 3910: "tstzrange", 3912: "daterange", 3926: "int8range", 4072: "jsonpath",
	4089: "regnamespace", 4096: "regrole", 5069: "xid8",
}

// decoderFor returns how to read a column of type oid, or an error for types the adapter does
// not support.
func decoderFor(oid uint32) (columnDecoder, error) {
	str := func(s string) (any, error) { return s, nil }
	arr := func(name string, elem func(string) (any, error)) columnDecoder {
		return columnDecoder{name, func(s string) (any, error) { return parseArrayLiteral(s, elem) }}
	}
	switch oid {
	case oidInt2, oidInt4:
		return columnDecoder{"int", parseIntValue}, nil
	case oidInt8:
		return columnDecoder{"bigint", str}, nil
	case oidOID:
		return columnDecoder{"bigint", parseIntValue}, nil
	case oidFloat4:
		return columnDecoder{"float", parseFloatValue}, nil
	case oidFloat8:
		return columnDecoder{"double", parseFloatValue}, nil
	case oidBool:
		return columnDecoder{"bool", parseBoolValue}, nil
	case oidDate:
		return columnDecoder{"date", str}, nil
	case oidTime:
		return columnDecoder{"time", str}, nil
	case oidTimetz:
		return columnDecoder{"time", func(s string) (any, error) { return stripOffset(s), nil }}, nil
	case oidTimestamp:
		return columnDecoder{"datetime", func(s string) (any, error) { return normalizeTimestamp(s), nil }}, nil
	case oidTimestamptz:
		return columnDecoder{"datetime", func(s string) (any, error) { return normalizeTimestamptz(s), nil }}, nil
	case oidNumeric:
		return columnDecoder{"decimal", str}, nil
	case oidMoney:
		return columnDecoder{"decimal", parseMoney}, nil
	case oidJSON, oidJSONB:
		return columnDecoder{"json", str}, nil
	case oidUUID:
		return columnDecoder{"uuid", str}, nil
	case oidBPChar, oidText, oidVarchar, oidBit, oidVarbit, oidInet, oidCIDR, oidXML, oidName:
		return columnDecoder{"string", str}, nil
	case oidBytea:
		return columnDecoder{"bytes", parseBytea}, nil
	case oidInt2Array, oidInt4Array:
		return arr("int-array", parseIntValue), nil
	case oidFloat4Array:
		return arr("float-array", parseFloatValue), nil
	case oidFloat8Array:
		return arr("double-array", parseFloatValue), nil
	case oidNumericArray:
		return arr("decimal-array", str), nil
	case oidMoneyArray:
		return arr("decimal-array", parseMoney), nil
	case oidBoolArray:
		return arr("bool-array", parseBoolValue), nil
	case oidCharArray:
		return arr("char-array", str), nil
	case oidBPCharArray, oidTextArray, oidVarcharArray, oidVarbitArray, oidBitArray, oidInetArray, oidCIDRArray, oidXMLArray:
		return arr("string-array", str), nil
	case oidDateArray:
		return arr("date-array", str), nil
	case oidTimeArray:
		return arr("time-array", str), nil
	case oidTimestampArr:
		return arr("datetime-array", func(s string) (any, error) { return normalizeTimestamp(s), nil }), nil
	case oidTstzArray:
		return arr("datetime-array", func(s string) (any, error) { return normalizeTimestamptz(s), nil }), nil
	case oidJSONArray, oidJSONBArray:
		return arr("json-array", str), nil
	case oidByteaArray:
		return arr("bytes-array", parseBytea), nil
	case oidUUIDArray:
		return arr("uuid-array", str), nil
	case oidInt8Array:
		return arr("bigint-array", str), nil
	case oidOIDArray:
		return arr("bigint-array", parseIntValue), nil
	}
	if oid >= firstUserOID {
		return columnDecoder{"string", str}, nil
	}
	name, ok := pgTypeNames[oid]
	if !ok {
		name = "Unknown"
	}
	return columnDecoder{}, &driverError{kind: "UnsupportedNativeDataType", fields: []field{{"type", name}}}
}

func (d *driverError) Error() string { return d.kind + ": " + d.prismaMessage() }

func parseIntValue(s string) (any, error) {
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
		return float64(n), nil
	}
	return jsStringToNumber(s), nil // something odd: keep JavaScript's view of it
}

func parseFloatValue(s string) (any, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return jsStringToNumber(s), nil
}

func parseBoolValue(s string) (any, error) {
	switch s {
	case "TRUE", "t", "true", "y", "yes", "on", "1":
		return true, nil
	}
	return false, nil
}

// parseMoney drops the currency symbol, as the adapter does.
func parseMoney(s string) (any, error) {
	if s == "" {
		return s, nil
	}
	return s[1:], nil
}

// parseBytea reads bytea in the hex format (\x...) or the legacy escape format.
func parseBytea(s string) (any, error) {
	if strings.HasPrefix(s, `\x`) {
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("invalid bytea value: %w", err)
		}
		return b, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+3 < len(s) {
			n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err == nil {
				out = append(out, byte(n))
				i += 3
				continue
			}
		}
		return nil, fmt.Errorf("invalid bytea escape at %d", i)
	}
	return out, nil
}

// normalizeTimestamp writes a timestamp (without zone) as ISO with a UTC offset.
func normalizeTimestamp(s string) string {
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i] + "T" + s[i+1:] + "+00:00"
	}
	return s + "+00:00"
}

// normalizeTimestamptz writes a timestamptz as ISO in UTC. Values the session printed in
// another zone are converted; infinities and BC dates keep the adapter's textual rewrite.
func normalizeTimestamptz(s string) string {
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format("2006-01-02T15:04:05.999999") + "+00:00"
		}
	}
	return stripOffset(strings.Replace(s, " ", "T", 1)) + "+00:00"
}

// stripOffset removes a trailing ±hh[:mm] zone offset.
func stripOffset(s string) string {
	for _, n := range []int{6, 3} { // "+05:30", "+05"
		if len(s) > n {
			tail := s[len(s)-n:]
			if (tail[0] == '+' || tail[0] == '-') && isDigits(tail[1:3]) && (n == 3 || tail[3] == ':' && isDigits(tail[4:])) {
				return s[:len(s)-n]
			}
		}
	}
	return s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseArrayLiteral reads a Postgres array's text form ({1,2}, {{a,b},{c,NULL}}, {"x y"}),
// converting each element with elem.
func parseArrayLiteral(s string, elem func(string) (any, error)) (any, error) {
	if i := strings.Index(s, "={"); i >= 0 && strings.HasPrefix(s, "[") { // [1:2]={...}
		s = s[i+1:]
	}
	p := arrayLiteralParser{s: s, elem: elem}
	v, err := p.array(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("invalid array literal %q", s)
	}
	return v, nil
}

type arrayLiteralParser struct {
	s    string
	pos  int
	elem func(string) (any, error)
}

func (p *arrayLiteralParser) array(depth int) ([]any, error) {
	if depth > 6 || p.pos >= len(p.s) || p.s[p.pos] != '{' {
		return nil, fmt.Errorf("invalid array literal %q", p.s)
	}
	p.pos++
	out := []any{}
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	for {
		if p.pos >= len(p.s) {
			return nil, fmt.Errorf("invalid array literal %q", p.s)
		}
		var v any
		var err error
		switch p.s[p.pos] {
		case '{':
			v, err = p.array(depth + 1)
		case '"':
			v, err = p.quoted()
		default:
			v, err = p.bare()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.pos >= len(p.s) {
			return nil, fmt.Errorf("invalid array literal %q", p.s)
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return out, nil
		default:
			return nil, fmt.Errorf("invalid array literal %q", p.s)
		}
	}
}

func (p *arrayLiteralParser) quoted() (any, error) {
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case '\\':
			if p.pos+1 < len(p.s) {
				b.WriteByte(p.s[p.pos+1])
			}
			p.pos += 2
		case '"':
			p.pos++
			return p.elem(b.String())
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return nil, fmt.Errorf("unterminated quoted element in %q", p.s)
}

func (p *arrayLiteralParser) bare() (any, error) {
	start := p.pos
	for p.pos < len(p.s) && p.s[p.pos] != ',' && p.s[p.pos] != '}' {
		p.pos++
	}
	text := strings.TrimSpace(p.s[start:p.pos])
	if text == "NULL" {
		return nil, nil
	}
	return p.elem(text)
}
