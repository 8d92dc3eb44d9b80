package accelerate

import (
	"math"
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
	} {
		if got := jsNumberString(in); got != want {
			t.Errorf("jsNumberString(%v) = %q, want %q", in, got, want)
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
