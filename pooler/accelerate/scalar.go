package accelerate

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Scalar conversions the reference performs with JavaScript built-ins and decimal.js:
// new Date(x).toISOString(), String(new Decimal(x)), and Buffer's lenient base64.

var errInvalidTime = errors.New("Invalid time value") //nolint:staticcheck // ST1005: JavaScript's RangeError text

// normalized returns the wire form of a tagged value's "value".
func (t tagged) normalized() (string, error) {
	switch t.typ {
	case tagBigInt:
		return jsToString(t.value), nil
	case tagBytes:
		switch v := t.value.(type) {
		case []byte:
			return base64.StdEncoding.EncodeToString(v), nil
		case string:
			return base64.StdEncoding.EncodeToString(decodeBase64Lenient(v)), nil
		}
		return "", fmt.Errorf("invalid Bytes value %s", jsToString(t.value))
	case tagDateTime:
		d, err := toDate(t.value)
		if err != nil {
			return "", err
		}
		return jsISOString(d), nil
	case tagDecimal:
		switch v := t.value.(type) {
		case string:
			return decimalString(v)
		case float64:
			return decimalString(jsNumberString(v))
		}
		return "", fmt.Errorf("[DecimalError] Invalid argument: %s", jsToString(t.value))
	case tagJSON:
		return reformatJSON(jsToString(t.value))
	}
	return "", fmt.Errorf("unknown tagged value type %q", t.typ)
}

// toDate is new Date(v) for a string, a number of milliseconds or a Date.
func toDate(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case float64:
		if math.IsNaN(x) || x > 8.64e15 || x < -8.64e15 {
			return time.Time{}, errInvalidTime
		}
		return time.UnixMilli(int64(x)).UTC(), nil
	case string:
		if d, ok := parseJSDate(x); ok {
			return d, nil
		}
	}
	return time.Time{}, errInvalidTime
}

// jsISOString is Date.prototype.toISOString: UTC, milliseconds, extended years beyond 0-9999.
func jsISOString(t time.Time) string { return string(appendJSISOString(make([]byte, 0, 24), t)) }

// appendJSISOString appends jsISOString(t).
func appendJSISOString(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	switch {
	case year >= 0 && year <= 9999:
		dst = appendDigits(dst, year, 4)
	case year < 0:
		dst = appendDigits(append(dst, '-'), -year, 6)
	default:
		dst = appendDigits(append(dst, '+'), year, 6)
	}
	dst = appendDigits(append(dst, '-'), int(month), 2)
	dst = appendDigits(append(dst, '-'), day, 2)
	dst = appendDigits(append(dst, 'T'), hour, 2)
	dst = appendDigits(append(dst, ':'), minute, 2)
	dst = appendDigits(append(dst, ':'), sec, 2)
	dst = appendDigits(append(dst, '.'), t.Nanosecond()/int(time.Millisecond), 3)
	return append(dst, 'Z')
}

// appendUTCDateTime appends jsISOString of the date s, for the form the result decoders
// write timestamps in — "YYYY-MM-DDTHH:MM:SS[.fraction]" and "+00:00" or "Z", every field in
// range — by copying its digits (no time.Time is made); ok is false for any other string.
func appendUTCDateTime(dst []byte, s string) (out []byte, ok bool) {
	switch {
	case strings.HasSuffix(s, "+00:00"):
		s = s[:len(s)-6]
	case strings.HasSuffix(s, "Z"):
		s = s[:len(s)-1]
	default:
		return dst, false
	}
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return dst, false
	}
	field := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := field(0, 4), field(5, 2), field(8, 2)
	hour, minute, sec := field(11, 2), field(14, 2), field(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return dst, false
	}
	frac := s[19:]
	if frac != "" {
		if frac[0] != '.' || len(frac) < 2 {
			return dst, false
		}
		for _, c := range []byte(frac[1:]) {
			if c < '0' || c > '9' {
				return dst, false
			}
		}
	}
	dst = append(dst, s[:19]...)
	dst = append(dst, '.')
	for k := 1; k <= 3; k++ { // milliseconds: the fraction's first three digits
		if k < len(frac) {
			dst = append(dst, frac[k])
		} else {
			dst = append(dst, '0')
		}
	}
	return append(dst, 'Z'), true
}

// appendDigits appends n (>= 0) in decimal, zero-padded to width digits.
func appendDigits(dst []byte, n, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for n >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	buf[i] = byte('0' + n)
	return append(dst, buf[i:]...)
}

// parseJSDate parses the ISO-8601 forms JavaScript's Date accepts: a date (UTC), or a date and
// time with an optional offset (none means UTC here: the pooler runs in UTC). Fractional
// seconds beyond milliseconds are truncated, as V8 does. A space may stand for the 'T'.
func parseJSDate(s string) (time.Time, bool) {
	i := 0
	num := func(n int) (int, bool) {
		if len(s)-i < n {
			return 0, false
		}
		v := 0
		for k := 0; k < n; k++ {
			c := s[i+k]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		i += n
		return v, true
	}
	sign, yearDigits := 1, 4
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		if s[i] == '-' {
			sign = -1
		}
		i++
		yearDigits = 6
	}
	year, ok := num(yearDigits)
	if !ok {
		return time.Time{}, false
	}
	year *= sign
	month, day := 1, 1
	if i < len(s) && s[i] == '-' {
		i++
		if month, ok = num(2); !ok {
			return time.Time{}, false
		}
		if i < len(s) && s[i] == '-' {
			i++
			if day, ok = num(2); !ok {
				return time.Time{}, false
			}
		}
	}
	var hour, minute, sec, nanos int
	offset := 0
	if i < len(s) {
		if s[i] != 'T' && s[i] != 't' && s[i] != ' ' {
			return time.Time{}, false
		}
		i++
		if hour, ok = num(2); !ok || i >= len(s) || s[i] != ':' {
			return time.Time{}, false
		}
		i++
		if minute, ok = num(2); !ok {
			return time.Time{}, false
		}
		if i < len(s) && s[i] == ':' {
			i++
			if sec, ok = num(2); !ok {
				return time.Time{}, false
			}
			if i < len(s) && (s[i] == '.' || s[i] == ',') {
				i++
				start := i
				for i < len(s) && s[i] >= '0' && s[i] <= '9' {
					i++
				}
				frac := s[start:i]
				if frac == "" {
					return time.Time{}, false
				}
				ms := (frac + "00")[:3]
				n, _ := strconv.Atoi(ms)
				nanos = n * int(time.Millisecond)
			}
		}
		if i < len(s) {
			switch s[i] {
			case 'Z', 'z':
				i++
			case '+', '-':
				neg := s[i] == '-'
				i++
				oh, ok1 := num(2)
				if !ok1 {
					return time.Time{}, false
				}
				if i < len(s) && s[i] == ':' {
					i++
				}
				om, ok2 := num(2)
				if !ok2 {
					return time.Time{}, false
				}
				offset = oh*3600 + om*60
				if neg {
					offset = -offset
				}
			default:
				return time.Time{}, false
			}
		}
	}
	if i != len(s) || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour > 24 || minute > 59 || sec > 59 || (hour == 24 && (minute != 0 || sec != 0 || nanos != 0)) {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

// daysIn is the number of days of a month in the proleptic Gregorian calendar.
func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// decimalString is String(new Decimal(s)) with decimal.js's defaults: trailing zeros dropped,
// exponential notation when the exponent is <= -7 or >= 21, "-0" written "0".
func decimalString(s string) (string, error) {
	invalid := func() (string, error) { return "", fmt.Errorf("[DecimalError] Invalid argument: %s", s) }
	switch s {
	case "NaN", "-NaN", "+NaN":
		return "NaN", nil
	case "Infinity", "+Infinity":
		return "Infinity", nil
	case "-Infinity":
		return "-Infinity", nil
	}
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var digits []byte
	pointAt, sawPoint, sawDigit := -1, false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			sawDigit = true
		case c == '.' && !sawPoint:
			sawPoint = true
			pointAt = len(digits)
		default:
			goto exponent
		}
	}
exponent:
	if !sawDigit {
		return invalid()
	}
	exp := 0
	if i < len(s) {
		if s[i] != 'e' && s[i] != 'E' {
			return invalid()
		}
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || s[i+1:] == "" || s[i+1] == ' ' {
			return invalid()
		}
		exp = n
	}
	if pointAt < 0 {
		pointAt = len(digits)
	}
	// Strip leading zeros (moving the point) and trailing zeros.
	lead := 0
	for lead < len(digits) && digits[lead] == '0' {
		lead++
	}
	if lead == len(digits) {
		return "0", nil
	}
	digits = digits[lead:]
	e := pointAt - lead - 1 + exp // exponent of the first significant digit
	digits = []byte(strings.TrimRight(string(digits), "0"))
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case e <= -7 || e >= 21:
		b.WriteByte(digits[0])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.Write(digits[1:])
		}
		b.WriteByte('e')
		if e >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(e))
	case e < 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -e-1))
		b.Write(digits)
	case e >= len(digits)-1:
		b.Write(digits)
		b.WriteString(strings.Repeat("0", e-(len(digits)-1)))
	default:
		b.Write(digits[:e+1])
		b.WriteByte('.')
		b.Write(digits[e+1:])
	}
	return b.String(), nil
}

// decodeBase64Lenient decodes like Node's Buffer.from(s, "base64"): URL-safe characters are
// accepted, padding is optional and characters outside the alphabet are skipped.
func decodeBase64Lenient(s string) []byte {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '-':
			clean = append(clean, '+')
		case c == '_':
			clean = append(clean, '/')
		case c == '=':
			i = len(s) // data ends at the first padding character
		}
	}
	if len(clean)%4 == 1 { // a lone trailing character carries no whole byte
		clean = clean[:len(clean)-1]
	}
	out, _ := base64.RawStdEncoding.DecodeString(string(clean))
	return out
}
