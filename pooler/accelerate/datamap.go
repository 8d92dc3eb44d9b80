package accelerate

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// dataMap shapes rows into Prisma's result objects: fields renamed from their column names,
// nested objects, and scalars as the client expects them (tagged BigInt, Decimal, DateTime,
// Bytes and Json values; enums mapped to their Prisma names).

// dataMapError is the reference's DataMapperError (P2023).
func dataMapError(format string, args ...any) *apiError {
	return userFacing("P2023", fmt.Sprintf(format, args...), nil)
}

func applyDataMap(data any, structure *resultNode, enums map[string]map[string]string) (any, error) {
	switch structure.typ {
	case "affectedRows":
		n, ok := data.(float64)
		if !ok {
			return nil, dataMapError("Expected an affected rows count, got: %s (%s)", jsTypeOf(data), jsToString(data))
		}
		return recordOf("count", n), nil
	case "object":
		return mapArrayOrObject(data, structure.fields, enums, structure.skipNulls)
	}
	return mapValue(data, "<result>", structure.fieldType, enums)
}

func mapArrayOrObject(data any, fields []namedResult, enums map[string]map[string]string, skipNulls bool) (any, error) {
	switch x := data.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]any, 0, len(x))
		for _, row := range x {
			if skipNulls && row == nil {
				continue
			}
			m, err := mapObject(row, fields, enums)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	case *record:
		return mapObject(x, fields, enums)
	case string: // relation data aggregated as JSON by the database
		decoded, err := parseJSON([]byte(x))
		if err != nil {
			return nil, dataMapError("Expected an array or object, got a string that is not valid JSON")
		}
		return mapArrayOrObject(decoded, fields, enums, skipNulls)
	}
	return nil, dataMapError("Expected an array or an object, got: %s", jsTypeOf(data))
}

func mapObject(data any, fields []namedResult, enums map[string]map[string]string) (any, error) {
	row, ok := data.(*record)
	if !ok {
		if data == nil { // typeof null is "object": the reference fails on the first field read
			return nil, dataMapError("Expected an object, but got 'null'")
		}
		return nil, dataMapError("Expected an object, but got '%s'", jsTypeOf(data))
	}
	out := newRecord(len(fields))
	next := 0 // where the row's next column probably is: rows hold the columns in the structure's order
	for _, f := range fields {
		switch f.node.typ {
		case "affectedRows":
			return nil, dataMapError("Unexpected 'AffectedRows' node in data mapping for field '%s'", f.name)
		case "object":
			target := any(row)
			if sn := f.node.serializedName; sn != nil {
				v, ok := row.get(*sn)
				if !ok {
					return nil, dataMapError("Missing data field (Object): '%s'", f.name)
				}
				target = v
			}
			v, err := mapArrayOrObject(target, f.node.fields, enums, f.node.skipNulls)
			if err != nil {
				return nil, err
			}
			out.add(f.name, v)
		case "field":
			var v any
			var ok bool
			if next < len(row.fields) && row.fields[next].name == f.node.dbName {
				v, ok = row.fields[next].value, true
				next++
			} else if i := row.find(f.node.dbName); i >= 0 {
				v, ok = row.fields[i].value, true
				next = i + 1
			}
			if !ok {
				return nil, dataMapError("Missing data field (Value): '%s'", f.node.dbName)
			}
			mapped, err := mapFieldValue(v, f.node.dbName, f.node.fieldType, enums)
			if err != nil {
				return nil, err
			}
			out.add(f.name, mapped)
		}
	}
	return out, nil
}

func mapFieldValue(v any, column string, ft fieldType, enums map[string]map[string]string) (any, error) {
	if v == nil {
		if ft.arity == "list" {
			return []any{}, nil
		}
		return nil, nil
	}
	if ft.arity == "list" {
		l, ok := v.([]any)
		if !ok {
			return nil, dataMapError("Expected a list in column '%s', got %s", column, jsTypeOf(v))
		}
		out := make([]any, len(l))
		for i, e := range l {
			var err error
			if out[i], err = mapValue(e, fmt.Sprintf("%s[%d]", column, i), ft, enums); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return mapValue(v, column, ft, enums)
}

func mapValue(v any, column string, ft fieldType, enums map[string]map[string]string) (any, error) {
	got := func(what string) error {
		return dataMapError("Expected %s in column '%s', got %s: %s", what, column, jsTypeOf(v), jsToString(v))
	}
	switch ft.typ {
	case "unsupported":
		return v, nil
	case "string":
		if _, ok := v.(string); !ok {
			return nil, got("a string")
		}
		return v, nil
	case "int":
		switch x := v.(type) {
		case float64:
			if t := math.Trunc(x); t != x {
				return t, nil
			}
			return v, nil // already an integer (or NaN): no new value
		case string:
			n := math.Trunc(jsStringToNumber(x))
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return nil, dataMapError("Expected an integer in column '%s', got string: %s", column, x)
			}
			if math.Abs(n) > 1<<53-1 {
				return nil, dataMapError("Integer value in column '%s' is too large to represent as a JavaScript number without loss of precision, got: %s. Consider using BigInt type.", column, x)
			}
			return n, nil
		}
		return nil, got("an integer")
	case "bigint":
		switch v.(type) {
		case float64, string:
			return tagged{tagBigInt, v}, nil
		}
		return nil, got("a bigint")
	case "float":
		switch x := v.(type) {
		case float64:
			return x, nil
		case string:
			n := jsStringToNumber(x)
			if math.IsNaN(n) && strings.ToLower(strings.TrimLeft(x, "+-")) != "nan" {
				return nil, dataMapError("Expected a float in column '%s', got string: %s", column, x)
			}
			return n, nil
		}
		return nil, got("a float")
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		case float64:
			return x == 1, nil
		case string:
			switch x {
			case "true", "TRUE", "1":
				return true, nil
			case "false", "FALSE", "0":
				return false, nil
			}
		case []byte:
			for _, b := range x {
				if b != 0 {
					return true, nil
				}
			}
			return false, nil
		case []any:
			for _, b := range x {
				if jsToNumber(b) != 0 {
					return true, nil
				}
			}
			return false, nil
		}
		return nil, got("a boolean")
	case "decimal":
		switch v.(type) {
		case float64, string:
			return tagged{tagDecimal, v}, nil
		}
		return nil, got("a decimal")
	case "datetime":
		switch x := v.(type) {
		case string:
			return tagged{tagDateTime, normalizeDateTime(x)}, nil
		case float64, time.Time:
			return tagged{tagDateTime, x}, nil
		}
		return nil, got("a date")
	case "object":
		s, err := jsonStringify(v)
		if err != nil {
			return nil, err
		}
		return tagged{tagJSON, s}, nil
	case "json":
		return tagged{tagJSON, jsToString(v)}, nil
	case "bytes":
		switch ft.encoding {
		case "base64":
			s, ok := v.(string)
			if !ok {
				return nil, got("a base64-encoded byte array")
			}
			return tagged{tagBytes, s}, nil
		case "hex":
			s, ok := v.(string)
			if !ok || !strings.HasPrefix(s, `\x`) {
				return nil, got("a hex-encoded byte array")
			}
			b, _ := hex.DecodeString(s[2:])
			return tagged{tagBytes, base64.StdEncoding.EncodeToString(b)}, nil
		default: // array
			switch x := v.(type) {
			case []byte:
				return tagged{tagBytes, base64.StdEncoding.EncodeToString(x)}, nil
			case []any:
				b := make([]byte, len(x))
				for i, e := range x {
					b[i] = byte(int64(jsToNumber(e)))
				}
				return tagged{tagBytes, base64.StdEncoding.EncodeToString(b)}, nil
			}
			return nil, got("a byte array")
		}
	case "enum":
		def, ok := enums[ft.enumName]
		if !ok {
			return nil, dataMapError("Unknown enum '%s'", ft.enumName)
		}
		name, ok := def[jsToString(v)]
		if !ok {
			return nil, dataMapError("Value '%s' not found in enum '%s'", jsToString(v), ft.enumName)
		}
		return name, nil
	}
	return nil, dataMapError("DataMapper: Unknown result type: %s", ft.typ)
}

// normalizeDateTime completes the date/time strings of date, time and timestamp columns into
// full ISO timestamps: a date gets midnight UTC, a time the date 1970-01-01, a missing zone Z.
func normalizeDateTime(dt string) string {
	m, ok := matchTimeTZ(dt)
	if !ok {
		return dt + "T00:00:00Z"
	}
	withTZ := dt
	tzPresent := m[2] >= 0
	tz := ""
	if tzPresent {
		tz = dt[m[2]:m[3]]
	}
	minutePresent := m[4] >= 0
	switch {
	case tzPresent && tz != "Z" && !minutePresent:
		withTZ = dt + ":00"
	case !tzPresent:
		withTZ = dt + "Z"
	}
	if m[1]-m[0] == len(dt) { // a time alone
		return "1970-01-01T" + withTZ
	}
	if sep := m[0] - 1; sep >= 0 && withTZ[sep] == ' ' {
		withTZ = withTZ[:sep] + "T" + withTZ[sep+1:]
	}
	return withTZ
}

// matchTimeTZ finds a time with an optional zone at the end of s, as the reference's regular
// expression /\d{2}:\d{2}:\d{2}(?:\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?$/ does (its leftmost match), and
// returns the submatch indices FindStringSubmatchIndex would: the match, the zone and the
// zone's minutes, -1 for a group that took no part; ok is false for no match.
func matchTimeTZ(s string) (m [6]int, ok bool) {
	if len(s) < 8 {
		return m, false
	}
	digits := func(i, n int) bool {
		if i+n > len(s) {
			return false
		}
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	for start := 0; start+8 <= len(s); start++ {
		if s[start+2] != ':' || s[start+5] != ':' || !digits(start, 2) || !digits(start+3, 2) || !digits(start+6, 2) {
			continue
		}
		i := start + 8
		if i < len(s) && s[i] == '.' && digits(i+1, 1) {
			i += 2
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
		}
		m = [6]int{start, len(s), -1, -1, -1, -1}
		switch {
		case i == len(s):
			return m, true
		case s[i] == 'Z' && i+1 == len(s):
			m[2], m[3] = i, len(s)
			return m, true
		case (s[i] == '+' || s[i] == '-') && digits(i+1, 2):
			m[2], m[3] = i, len(s)
			switch rest := s[i+3:]; {
			case rest == "":
				return m, true
			case len(rest) == 2 && digits(i+3, 2):
				m[4], m[5] = i+3, len(s)
				return m, true
			case len(rest) == 3 && rest[0] == ':' && digits(i+4, 2):
				m[4], m[5] = i+3, len(s)
				return m, true
			}
		}
	}
	return m, false
}
