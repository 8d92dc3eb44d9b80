package accelerate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The expected values below are what node 20 and decimal.js (Prisma's Decimal) print.

func TestDecimalString(t *testing.T) {
	for in, want := range map[string]string{
		"10.500000000000000000000000000000": "10.5",
		"-0":                                "0",
		"0.00":                              "0",
		"-1.50":                             "-1.5",
		"1e-7":                              "1e-7",
		"0.00000010":                        "1e-7",
		"0.000001":                          "0.000001",
		"123456789012345678901234":          "1.23456789012345678901234e+23",
		"1e21":                              "1e+21",
		"100":                               "100",
		"1.23e+5":                           "123000",
		"00012.3400":                        "12.34",
		".5":                                "0.5",
		"NaN":                               "NaN",
		"-Infinity":                         "-Infinity",
	} {
		got, err := decimalString(in)
		if err != nil || got != want {
			t.Errorf("decimalString(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "   5", "1e", "--1", "1.2.3"} {
		if got, err := decimalString(bad); err == nil {
			t.Errorf("decimalString(%q) = %q, want an error", bad, got)
		}
	}
}

func TestJSNumberString(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", math.Copysign(0, -1): "0", 1: "1", -2.5: "-2.5", math.Nextafter(0.3, 1): "0.30000000000000004",
		1e21: "1e+21", 1e20: "100000000000000000000", 1e-7: "1e-7", 0.000001: "0.000001",
		123e-20: "1.23e-18", 9007199254740993: "9007199254740992", math.NaN(): "NaN", math.Inf(-1): "-Infinity",
		-7: "-7", 999999999999999: "999999999999999", -999999999999999: "-999999999999999", 1e15: "1000000000000000",
		-1e15: "-1000000000000000", 1e300: "1e+300", -9223372036854775808: "-9223372036854776000",
	} {
		if got := jsNumberString(in); got != want {
			t.Errorf("jsNumberString(%v) = %q, want %q", in, got, want)
		}
		// JSON writes numbers as String does, and null for NaN and the infinities.
		if want == "NaN" || strings.HasSuffix(want, "Infinity") {
			want = "null"
		}
		if got, err := appendJSON(nil, in); err != nil || string(got) != want {
			t.Errorf("JSON of %v = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]float64{"": 0, "\t12\n": 12, "0x1A": 26, "1e3": 1000, "-Infinity": math.Inf(-1)} {
		if got := jsStringToNumber(in); got != want {
			t.Errorf("Number(%q) = %v, want %v", in, got, want)
		}
	}
	for _, in := range []string{"abc", "inf", "nan", "1_000", "12px"} {
		if got := jsStringToNumber(in); !math.IsNaN(got) {
			t.Errorf("Number(%q) = %v, want NaN", in, got)
		}
	}
}

func TestJSDates(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-29T11:58:45.513995+00:00": "2026-11-29T11:58:45.513Z", // truncated, as V8 does
		"2026-11-29T11:58:45.5+00:00":      "2026-11-29T11:58:45.500Z",
		"2024-01-02":                       "2024-01-02T00:00:00.000Z",
		"2024-01-02T03:04:05+02:30":        "2024-01-02T00:34:05.000Z",
		"2024-01-02 03:04:05Z":             "2024-01-02T03:04:05.000Z",
		"+012024-01-02T00:00:00Z":          "+012024-01-02T00:00:00.000Z",
		"1970-01-01T03:04:05Z":             "1970-01-01T03:04:05.000Z",
	} {
		d, ok := parseJSDate(in)
		if !ok || jsISOString(d) != want {
			t.Errorf("new Date(%q).toISOString() = %q (%v), want %q", in, jsISOString(d), ok, want)
		}
	}
	for _, bad := range []string{"", "infinityT00:00:00Z", "2024-13-01", "2024-02-30", "2024-01-02T25:00", "yesterday"} {
		if _, ok := parseJSDate(bad); ok {
			t.Errorf("parseJSDate(%q) accepted", bad)
		}
	}
	if _, err := toDate(math.NaN()); err == nil {
		t.Error("new Date(NaN) is valid")
	}
	if d, _ := toDate(0.0); !d.Equal(time.Unix(0, 0)) {
		t.Errorf("new Date(0) = %v", d)
	}
}

func TestNormalizeDateTime(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-29T11:58:43.008+00:00": "2026-11-29T11:58:43.008+00:00", // timestamp(tz) columns
		"2024-01-02":                    "2024-01-02T00:00:00Z",          // date
		"03:04:05":                      "1970-01-01T03:04:05Z",          // time
		"03:04:05.5+02":                 "1970-01-01T03:04:05.5+02:00",   // timetz
		"2026-11-29T11:58:43.008":       "2026-11-29T11:58:43.008Z",      // inside JSON aggregates
		"2026-11-29 11:58:43":           "2026-11-29T11:58:43Z",
	} {
		if got := normalizeDateTime(in); got != want {
			t.Errorf("normalizeDateTime(%q) = %q, want %q", in, got, want)
		}
	}
}

// matchTimeTZ finds what the reference's regular expression finds, on every string of a small
// alphabet up to six characters and on longer variations of date/time strings.
func TestMatchTimeTZ(t *testing.T) {
	re := regexp.MustCompile(`\d{2}:\d{2}:\d{2}(?:\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?$`)
	check := func(s string) {
		m, ok := matchTimeTZ(s)
		var got []int
		if ok {
			got = m[:]
		}
		if want := re.FindStringSubmatchIndex(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %v, want %v", s, got, want)
		}
	}
	alphabet := []string{"1", ":", ".", "Z", "+", "-", "x"}
	var all func(prefix string, n int)
	all = func(prefix string, n int) {
		check(prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			all(prefix+c, n-1)
		}
	}
	all("", 6)
	for _, base := range []string{"12:34:56", "2026-11-29T12:34:56", "1970-01-01 12:34:56"} {
		for _, frac := range []string{"", ".", ".5", ".123456", ".1x"} {
			for _, zone := range []string{"", "Z", "ZZ", "+05", "-05", "+0530", "+05:30", "+05:3", "+05:301", "+5", "z", " "} {
				for _, wrap := range []string{"%s", "x%s", "%s:00", "12:%s", "00:00:00 %s"} {
					check(fmt.Sprintf(wrap, base+frac+zone))
				}
			}
		}
	}
}

// A DateTime in the form the result decoders write is written by copying its digits, exactly
// as parsing it and writing the date would; anything else is left to the general path.
func TestUTCDateTimeShortcut(t *testing.T) {
	var inputs []string
	for _, date := range []string{"2026-11-29", "0000-01-01", "9999-12-31", "2024-02-29", "2023-02-29", "2000-02-29",
		"1900-02-29", "2026-04-31", "2026-13-01", "2026-00-10", "2026-01-00", "+02026-01-01", "2026-1-01", "20x6-01-01"} {
		for _, sep := range []string{"T", " ", "t"} {
			for _, clock := range []string{"00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "1:00:00", "12:0a:00"} {
				for _, frac := range []string{"", ".", ".5", ".12", ".123", ".1234567891234", ".12a"} {
					for _, zone := range []string{"+00:00", "Z", "z", "-00:00", "+01:00", "", "+0000"} {
						inputs = append(inputs, date+sep+clock+frac+zone)
					}
				}
			}
		}
	}
	shortcuts := 0
	for _, s := range inputs {
		out, ok := appendUTCDateTime(nil, s)
		d, err := toDate(s)
		switch {
		case ok && err != nil:
			t.Errorf("%q: written %s, but it is not a date (%v)", s, out, err)
		case ok && string(out) != jsISOString(d):
			t.Errorf("%q: written %s, want %s", s, out, jsISOString(d))
		case ok:
			shortcuts++
		}
	}
	if shortcuts == 0 {
		t.Error("no date took the shortcut")
	}
	for year := -1000; year <= 3000; year++ {
		for month := 1; month <= 12; month++ {
			if got, want := daysIn(year, month), time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day(); got != want {
				t.Fatalf("daysIn(%d, %d) = %d, want %d", year, month, got, want)
			}
		}
	}
}

// jsISOString writes what toISOString does (the former fmt/time.Format implementation).
func TestJSISOString(t *testing.T) {
	reference := func(t time.Time) string {
		t = t.UTC().Truncate(time.Millisecond)
		y := t.Year()
		var year string
		switch {
		case y >= 0 && y <= 9999:
			year = fmt.Sprintf("%04d", y)
		case y < 0:
			year = fmt.Sprintf("-%06d", -y)
		default:
			year = fmt.Sprintf("+%06d", y)
		}
		return year + t.Format("-01-02T15:04:05.000Z")
	}
	zone := time.FixedZone("x", 5*3600+1800)
	for _, d := range []time.Time{
		time.Date(2026, 11, 29, 11, 58, 43, 8_765_432, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, zone),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(-271821, 4, 20, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999_500_000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(275760, 9, 13, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0), time.Date(1969, 12, 31, 23, 59, 59, 1_000_000, time.UTC),
	} {
		if got, want := jsISOString(d), reference(d); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

func TestDecodeBase64Lenient(t *testing.T) {
	for in, want := range map[string]string{"AQID": "\x01\x02\x03", "AQI=": "\x01\x02", "AQI": "\x01\x02",
		"-_8": "\xfb\xff", "AQ ID": "\x01\x02\x03", "": ""} {
		if got := string(decodeBase64Lenient(in)); got != want {
			t.Errorf("Buffer.from(%q, 'base64') = %q, want %q", in, got, want)
		}
	}
}

func TestTaggedNormalisation(t *testing.T) {
	for _, c := range []struct {
		v    tagged
		want string
	}{
		{tagged{tagBigInt, "9007199254740993"}, "9007199254740993"},
		{tagged{tagBigInt, 42.0}, "42"},
		{tagged{tagDecimal, "7.250000"}, "7.25"},
		{tagged{tagDecimal, 0.1}, "0.1"},
		{tagged{tagDateTime, "2026-11-29T11:58:43.008+00:00"}, "2026-11-29T11:58:43.008Z"},
		{tagged{tagDateTime, 0.0}, "1970-01-01T00:00:00.000Z"},
		{tagged{tagBytes, "AQI"}, "AQI="},
		{tagged{tagBytes, []byte{1, 2, 3}}, "AQID"},
		{tagged{tagJSON, `{"b": 1, "10": [1.0, 2e2], "a": "<\u2028>"}`}, `{"10":[1,200],"b":1,"a":"<` + "\u2028" + `>"}`},
	} {
		got, err := c.v.normalized()
		if err != nil || got != c.want {
			t.Errorf("%v normalised to %q, %v; want %q", c.v, got, err, c.want)
		}
	}
	if _, err := (tagged{tagDateTime, "infinityT00:00:00Z"}).normalized(); err == nil {
		t.Error("an invalid DateTime normalised")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := `{"a":[1,2.5,-0,1e400,"x\"\\\n\u0001é"],"b":{"c":null,"d":true},"":false}`
	v, err := parseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonStringify(v)
	if err != nil {
		t.Fatal(err)
	}
	// 1e400 is Infinity in JavaScript, which JSON.stringify writes as null.
	if want := `{"a":[1,2.5,0,null,"x\"\\\n\u0001é"],"b":{"c":null,"d":true},"":false}`; out != want {
		t.Errorf("round trip:\n got %s\nwant %s", out, want)
	}
	for _, bad := range []string{``, `{`, `{"a" 1}`, `[1,]`, `01`, `"\x"`, `{"a":1}x`, `tru`} {
		if _, err := parseJSON([]byte(bad)); err == nil {
			t.Errorf("parseJSON(%q) accepted", bad)
		}
	}
	deep := make([]byte, 0, 2*maxJSONDepth+4)
	for range maxJSONDepth + 2 {
		deep = append(deep, '[')
	}
	if _, err := parseJSON(deep); err == nil {
		t.Error("nesting beyond the depth limit accepted")
	}
}

// A deferred member (the plan of a request, skipped to look it up in the plan cache) is checked
// exactly as a parsed one.
func TestJSONSkipChecksAsParse(t *testing.T) {
	for _, plan := range []string{
		`{"a":[1,2.5,-0,1e400,"x\"\\\n\u0001é"],"b":{"c":null,"d":true},"":false}`, `"a long string with no escapes at all"`, `[]`, `{}`,
		``, `{`, `{"a" 1}`, `[1,]`, `01`, `-`, `1.`, `1e`, `"\x"`, `"\u12"`, `"\u12g4"`, `tru`, `nul`, `"a` + "\x01" + `b"`,
		`"unterminated`, `"unterminated \`, `{"a":1,}`, `[1 2]`, `{"a":1 "b":2}`, `{1:2}`, `@`,
	} {
		body := []byte(`{"plan":` + plan + `,"x":1}`)
		_, parseErr := parseJSON(body)
		_, raw, skipErr := parseJSONDeferring(body, "plan", nil)
		if (parseErr == nil) != (skipErr == nil) {
			t.Errorf("%s: parsed with %v, skipped with %v", plan, parseErr, skipErr)
		}
		if skipErr == nil && string(raw) != plan {
			t.Errorf("%s: skipped %s", plan, raw)
		}
	}
}

// plainWord tells exactly whether eight bytes need no escaping, whatever their neighbours.
func TestPlainWord(t *testing.T) {
	for c := range 256 {
		for _, neighbour := range []byte{'a', 0x00, 0x1f, 0x20, 0x21, '"', '\\', 0x7f, 0x80, 0xff} {
			for pos := range 8 {
				w := []byte{neighbour, neighbour, neighbour, neighbour, neighbour, neighbour, neighbour, neighbour}
				w[pos] = byte(c)
				want := true
				for _, b := range w {
					want = want && b >= 0x20 && b != '"' && b != '\\'
				}
				if got := plainWord(string(w)); got != want {
					t.Fatalf("%q: %v, want %v", w, got, want)
				}
			}
		}
	}
	for _, s := range []string{"", "plain", "exactly8", "0123456789abcdef\"", "0123456\n89abcdef", "é€😀 \u2028 ok",
		strings.Repeat("x", 15) + "\x01" + strings.Repeat("y", 9)} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		// encoding/json escapes U+2028 and U+2029 (and HTML, absent here); JSON.stringify does not.
		want = bytes.ReplaceAll(want, []byte(`\u2028`), []byte("\u2028"))
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestRecordKeys(t *testing.T) {
	rec := recordOf("id", 1.0, "b", []byte{1, 2}, "d", time.Unix(0, 0), "n", nil)
	if got := recordKey(rec, []string{"id", "b", "d", "n", "missing"}, nil); got != `[1,{"type":"Buffer","data":[1,2]},"1970-01-01T00:00:00.000Z",null,null]` {
		t.Errorf("record key %s", got)
	}
	casts := inferKeyCasts([]any{recordOf("id", 1.0)}, []string{"id"})
	if recordKey(recordOf("id", "1"), []string{"id"}, casts) != recordKey(rec, []string{"id"}, nil) {
		t.Error("a string key is not cast to the parents' number")
	}
}
