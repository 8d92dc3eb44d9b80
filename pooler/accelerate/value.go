package accelerate

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// The interpreter works on the values a JavaScript query-plan executor would hold, so that
// every node behaves as in Prisma's reference. A value is one of:
//
//	nil          JSON null
//	undefinedT   JavaScript undefined (a missing binding, the unit node)
//	bool
//	float64      a JavaScript number
//	string
//	[]any        an array
//	*record      an object with ordered keys
//	time.Time    a Date (DateTime parameters)
//	[]byte       a Buffer (bytea columns and Bytes parameters)
//	tagged       a {"$type", "value"} result value made by dataMap
//
// Arrays and records are shared by reference, as in JavaScript: a join attaches children to
// the parent records that other bindings may hold too.

// undefinedT is the type of undefined.
type undefinedT struct{}

var undefined = undefinedT{}

// record is an object whose keys keep their insertion order.
type record struct {
	fields []field
	index  map[string]int // position of each key, kept once the record is large
}

type field struct {
	name  string
	value any
}

// indexFrom is the size from which a record keeps an index of its keys: rows and plan
// objects stay below it; a request's params (one per bind value) may not.
const indexFrom = 16

func newRecord(n int) *record { return &record{fields: make([]field, 0, n)} }

func (r *record) find(key string) int {
	if r.index != nil {
		if i, ok := r.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range r.fields {
		if r.fields[i].name == key {
			return i
		}
	}
	return -1
}

// get returns the value of key and whether the record has it.
func (r *record) get(key string) (any, bool) {
	if i := r.find(key); i >= 0 {
		return r.fields[i].value, true
	}
	return undefined, false
}

// value returns the value of key, or undefined.
func (r *record) value(key string) any {
	v, _ := r.get(key)
	return v
}

// set adds key or replaces its value in place.
func (r *record) set(key string, v any) {
	if i := r.find(key); i >= 0 {
		r.fields[i].value = v
		return
	}
	r.add(key, v)
}

// add appends key, which the record does not have (set has looked; other callers know: keys
// of one plan object, distinct column slots).
func (r *record) add(key string, v any) {
	r.fields = append(r.fields, field{key, v})
	switch {
	case r.index != nil:
		r.index[key] = len(r.fields) - 1
	case len(r.fields) > indexFrom:
		r.index = make(map[string]int, 2*len(r.fields))
		for i, f := range r.fields {
			r.index[f.name] = i
		}
	}
}

// tagged is a typed result value ({"$type":"BigInt","value":"1"}) as dataMap produces it. It
// is normalised to the wire form when written.
type tagged struct {
	typ   string
	value any
}

// Tagged value types.
const (
	tagBigInt   = "BigInt"
	tagDecimal  = "Decimal"
	tagDateTime = "DateTime"
	tagBytes    = "Bytes"
	tagJSON     = "Json"
)

// jsTypeOf is JavaScript's typeof for a value (objects, arrays, null, Dates and Buffers are
// all "object").
func jsTypeOf(v any) string {
	switch v.(type) {
	case undefinedT:
		return "undefined"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	default:
		return "object"
	}
}

// isEmpty is the interpreter's emptiness: null, undefined or an empty array.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil, undefinedT:
		return true
	case []any:
		return len(x) == 0
	}
	return false
}

// asList wraps a non-array value in an array.
func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// jsNumberString formats f as JavaScript's String(number) does.
func jsNumberString(f float64) string {
	if i := int64(f); float64(i) == f && i > -1e15 && i < 1e15 && i != 0 {
		return strconv.FormatInt(i, 10) // an integer, written as is (most numbers are)
	}
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0" // also -0
	}
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// Go writes "1e-07"; JavaScript writes "1e-7".
		if i := strings.IndexByte(s, 'e'); i >= 0 && i+2 < len(s) && s[i+2] == '0' {
			s = s[:i+2] + strings.TrimLeft(s[i+2:], "0")
		}
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// jsToNumber is JavaScript's Number(v) for the values the interpreter holds.
func jsToNumber(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case bool:
		if x {
			return 1
		}
		return 0
	case nil:
		return 0
	case string:
		return jsStringToNumber(x)
	case time.Time:
		return float64(x.UnixMilli())
	case []any:
		switch len(x) {
		case 0:
			return 0
		case 1:
			return jsToNumber(x[0])
		}
	}
	return math.NaN()
}

// jsStringToNumber converts like Number("…"): surrounding white space is ignored, an empty
// string is 0, hexadecimal/octal/binary prefixes and Infinity are accepted, anything else NaN.
func jsStringToNumber(s string) float64 {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if len(s) > 2 && s[0] == '0' {
		base := 0
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 0 {
			n, err := strconv.ParseUint(s[2:], base, 64)
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		}
	}
	switch s {
	case "Infinity", "+Infinity":
		return math.Inf(1)
	case "-Infinity":
		return math.Inf(-1)
	}
	for i := 0; i < len(s); i++ { // reject Go-only forms such as "inf", "nan", "1_000", "0x1p3"
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
			return math.NaN()
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return f
		}
		return math.NaN()
	}
	return f
}

// jsToString is JavaScript's String(v) for the values keys are cast with.
func jsToString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return jsNumberString(x)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	case undefinedT:
		return "undefined"
	case time.Time:
		return jsISOString(x)
	case []byte:
		return string(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			if e != nil && e != any(undefined) {
				parts[i] = jsToString(e)
			}
		}
		return strings.Join(parts, ",")
	}
	return "[object Object]"
}

// jsTruthy is JavaScript's Boolean(v).
func jsTruthy(v any) bool {
	switch x := v.(type) {
	case nil, undefinedT:
		return false
	case bool:
		return x
	case float64:
		return x != 0 && !math.IsNaN(x)
	case string:
		return x != ""
	}
	return true
}
