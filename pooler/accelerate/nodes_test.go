package accelerate

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// evalPlan decodes a plan written as JSON and runs it without a database (the plans here
// hold no query nodes) with the given params (JSON object text).
func evalPlan(t *testing.T, plan, params string) (string, error) {
	t.Helper()
	pv, err := parseJSON([]byte(plan))
	if err != nil {
		t.Fatalf("plan JSON: %v", err)
	}
	n, err := decodePlan(pv)
	if err != nil {
		return "", err
	}
	vars := newRecord(0)
	if params != "" {
		p, err := parseJSON([]byte(params))
		if err != nil {
			t.Fatal(err)
		}
		vars = p.(*record)
	}
	in := &interpreter{gens: newGenerators(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), maxBind: defaultMaxBindValues}
	v, err := in.run(context.Background(), n, vars)
	if err != nil {
		return "", err
	}
	if v == any(undefined) {
		return "undefined", nil
	}
	out, err := jsonStringify(v)
	return out, err
}

// value is a value node holding JSON.
func value(v string) string { return `{"type":"value","args":` + v + `}` }

func param(name string) string {
	return `{"prisma__type":"param","prisma__value":{"name":"` + name + `","type":"Any"}}`
}

func TestNodeKinds(t *testing.T) {
	rows := value(`[{"id":1,"g":"a","n":"2"},{"id":2,"g":"a","n":3},{"id":3,"g":"b","n":4}]`)
	for _, c := range []struct{ name, plan, params, want string }{
		{"value with params and a DateTime", value(`[` + param("%1") + `,{"prisma__type":"param","prisma__value":{"name":"%2","type":"DateTime"}}]`),
			`{"%1":"x","%2":"2024-01-02T03:04:05Z"}`, `["x","2024-01-02T03:04:05.000Z"]`},
		{"seq returns the last", `{"type":"seq","args":[` + value("1") + `,` + value("2") + `]}`, "", `2`},
		{"let, get and scoping", `{"type":"let","args":{"bindings":[{"name":"a","expr":` + value("1") + `},{"name":"b","expr":{"type":"get","args":{"name":"a"}}}],"expr":{"type":"seq","args":[{"type":"get","args":{"name":"b"}}]}}}`, "", `1`},
		{"getFirstNonEmpty", `{"type":"let","args":{"bindings":[{"name":"e","expr":` + value("[]") + `},{"name":"f","expr":` + value("[7]") + `}],"expr":{"type":"getFirstNonEmpty","args":{"names":["missing","e","f"]}}}}`, "", `[7]`},
		{"getFirstNonEmpty of nothing", `{"type":"getFirstNonEmpty","args":{"names":["missing"]}}`, "", `[]`},
		{"concat flattens one level", `{"type":"concat","args":[` + value("[1,2]") + `,` + value("3") + `,` + value("[[4]]") + `]}`, "", `[1,2,3,[4]]`},
		{"sum of numbers and numeric strings", `{"type":"sum","args":[` + value("1") + `,` + value(`"2"`) + `,` + value("3.5") + `]}`, "", `6.5`},
		{"sum of one part is that part", `{"type":"sum","args":[` + value(`"7"`) + `]}`, "", `"7"`},
		{"sum of none", `{"type":"sum","args":[]}`, "", `0`},
		{"unique of one", `{"type":"unique","args":` + value(`[{"a":1}]`) + `}`, "", `{"a":1}`},
		{"unique of none", `{"type":"unique","args":` + value(`[]`) + `}`, "", `null`},
		{"required passes a value", `{"type":"required","args":` + value(`[1]`) + `}`, "", `[1]`},
		{"reverse", `{"type":"reverse","args":` + value(`[1,2,3]`) + `}`, "", `[3,2,1]`},
		{"mapField", `{"type":"mapField","args":{"field":"id","records":` + rows + `}}`, "", `[1,2,3]`},
		{"if then", `{"type":"if","args":{"value":` + value("[1]") + `,"rule":{"type":"rowCountNeq","args":0},"then":` + value(`"yes"`) + `,"else":` + value(`"no"`) + `}}`, "", `"yes"`},
		{"if else", `{"type":"if","args":{"value":` + value("null") + `,"rule":{"type":"rowCountNeq","args":0},"then":` + value(`"yes"`) + `,"else":` + value(`"no"`) + `}}`, "", `"no"`},
		{"unit is undefined", `{"type":"seq","args":[{"type":"unit"}]}`, "", `undefined`},
		{"diff by key fields", `{"type":"diff","args":{"from":` + rows + `,"to":` + value(`[{"id":2},{"id":9}]`) + `,"fields":["id"]}}`, "",
			`[{"id":1,"g":"a","n":"2"},{"id":3,"g":"b","n":4}]`},
		{"initializeRecord", `{"type":"initializeRecord","args":{"expr":{"type":"value","args":null,"lastInsertId":"17"},"fields":{"id":{"type":"lastInsertId"},"name":{"type":"value","value":` + param("%1") + `}}}}`,
			`{"%1":"n"}`, `{"id":"17","name":"n"}`},
		{"mapRecord operations", `{"type":"mapRecord","args":{"expr":` + value(`{"a":10,"b":"4","c":1,"d":2,"e":9,"f":5}`) + `,"fields":{"a":{"type":"add","value":5},"b":{"type":"subtract","value":1},"c":{"type":"multiply","value":3},"d":{"type":"divide","value":4},"e":{"type":"divide","value":0},"f":{"type":"set","value":"x"}}}}`, "",
			`{"a":15,"b":3,"c":3,"d":0.5,"e":null,"f":"x"}`},
		{"mapRecord of null", `{"type":"mapRecord","args":{"expr":` + value("null") + `,"fields":{"a":{"type":"set","value":1}}}}`, "", `{"a":1}`},
		{"process: distinct, cursor, skip, take, reverse", `{"type":"process","args":{"expr":` + value(`[{"id":1,"g":"a"},{"id":2,"g":"a"},{"id":3,"g":"b"},{"id":4,"g":"c"},{"id":5,"g":"d"}]`) +
			`,"operations":{"pagination":{"cursor":{"id":` + param("%1") + `},"take":2,"skip":1},"distinct":["g"],"reverse":true,"linkingFields":null,"nested":{}}}}`,
			`{"%1":"3"}`, `[{"id":5,"g":"d"},{"id":4,"g":"c"}]`},
		{"process: take per parent", `{"type":"process","args":{"expr":` + value(`[{"id":1,"p":2},{"id":2,"p":1},{"id":3,"p":2},{"id":4,"p":1}]`) +
			`,"operations":{"pagination":{"cursor":null,"take":1,"skip":null},"distinct":null,"reverse":false,"linkingFields":["p"],"nested":{}}}}`, "",
			`[{"id":2,"p":1},{"id":1,"p":2}]`},
		{"process: nested and a single record", `{"type":"process","args":{"expr":` + value(`{"id":1,"posts":"[{\"t\":1},{\"t\":2}]"}`) +
			`,"operations":{"pagination":null,"distinct":null,"reverse":false,"linkingFields":null,"nested":{"posts":{"pagination":{"cursor":null,"take":1,"skip":null},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}}}}}`, "",
			`{"id":1,"posts":[{"t":1}]}`},
		{"process: a single record skipped", `{"type":"process","args":{"expr":` + value(`{"id":1}`) +
			`,"operations":{"pagination":{"cursor":null,"take":null,"skip":1},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}}}`, "", `null`},
		{"join, many and unique, with key casts", `{"type":"join","args":{"parent":` + value(`[{"id":1},{"id":2}]`) + `,"canAssumeStrictEquality":false,"children":[` +
			`{"child":` + value(`[{"pid":"1","t":"a"},{"pid":1,"t":"b"},{"pid":3,"t":"x"}]`) + `,"on":[["id","pid"]],"parentField":"posts","isRelationUnique":false},` +
			`{"child":` + value(`[{"uid":2,"bio":"hi"},null]`) + `,"on":[["id","uid"]],"parentField":"profile","isRelationUnique":true}]}}`, "",
			`[{"id":1,"posts":[{"pid":"1","t":"a"},{"pid":1,"t":"b"}],"profile":null},{"id":2,"posts":[],"profile":{"uid":2,"bio":"hi"}}]`},
		{"join of a missing parent", `{"type":"join","args":{"parent":` + value(`null`) + `,"canAssumeStrictEquality":true,"children":[{"child":` + value(`[]`) + `,"on":[["id","pid"]],"parentField":"p","isRelationUnique":true}]}}`, "", `null`},
		{"generators", value(`[{"prisma__type":"generatorCall","prisma__value":{"name":"now","args":[]}},{"prisma__type":"generatorCall","prisma__value":{"name":"product","args":[[1,2],"a"]}},{"prisma__type":"generatorCall","prisma__value":{"name":"product","args":[[1],[2,3]]}}]`), "",
			`["2026-01-02T03:04:05.000Z",[[1,"a"],[2,"a"]],[[1,2],[1,3]]]`},
	} {
		got, err := evalPlan(t, c.plan, c.params)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestNodeFailures(t *testing.T) {
	for _, c := range []struct{ name, plan, params, want string }{
		{"unique of two", `{"type":"unique","args":` + value(`[1,2]`) + `}`, "", "Expected zero or one element, got 2"},
		{"required of nothing", `{"type":"required","args":` + value(`[]`) + `}`, "", "Required value is empty"},
		{"missing parameter", value(param("%9")), "", "Missing value for query variable %9"},
		{"sum of an object", `{"type":"sum","args":[` + value("1") + `,` + value("{}") + `]}`, "", "Expected number, got object"},
		{"uuid with a bad version", value(`{"prisma__type":"generatorCall","prisma__value":{"name":"uuid","args":[5]}}`), "", "Invalid UUID generator arguments"},
	} {
		_, err := evalPlan(t, c.plan, c.params)
		var pe *planError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a plan error %q", c.name, err, c.want)
		}
	}
}

func TestGeneratorFormats(t *testing.T) {
	g := newGenerators(time.Now())
	call := func(name string, args ...any) string {
		v, err := g.call(name, args)
		if err != nil {
			t.Fatalf("%s%v: %v", name, args, err)
		}
		return v.(string)
	}
	for _, c := range []struct {
		value, pattern string
	}{
		{call("uuid", 4.0), `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`},
		{call("uuid", 7.0), `^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`},
		{call("cuid", 1.0), `^c[0-9a-z]{24}$`},
		{call("cuid", 2.0), `^[a-z][0-9a-z]{23}$`},
		{call("ulid"), `^[0-9A-HJKMNP-TV-Z]{26}$`},
		{call("nanoid"), `^[A-Za-z0-9_-]{21}$`},
		{call("nanoid", 8.0), `^[A-Za-z0-9_-]{8}$`},
	} {
		if !matches(c.pattern, c.value) {
			t.Errorf("%q does not match %s", c.value, c.pattern)
		}
	}
	// cuid v1 ids made in sequence sort in creation order (ORDER BY id relies on it).
	prev := call("cuid", 1.0)
	for range 2000 {
		next := call("cuid", 1.0)
		if next[:13] <= prev[:13] {
			t.Fatalf("cuid %s does not sort after %s", next, prev)
		}
		prev = next
	}
	seen := map[string]bool{}
	for range 1000 {
		id := call("cuid", 2.0)
		if seen[id] {
			t.Fatalf("cuid2 repeated %s", id)
		}
		seen[id] = true
	}
}

func TestValidationErrors(t *testing.T) {
	for _, c := range []struct{ id, context, data, code, msg string }{
		{"MISSING_RECORD", `{"operation":"an update"}`, `[]`, "P2025",
			"An operation failed because it depends on one or more records that were required but not found. No record was found for an update."},
		{"MISSING_RELATED_RECORD", `{"model":"User","relation":"author","relationType":"one-to-many","operation":"a nested connect","neededFor":"create a Post"}`, `null`, "P2025",
			"An operation failed because it depends on one or more records that were required but not found. No 'User' record (needed to create a Post) was found for a nested connect on one-to-many relation 'author'."},
		{"INCOMPLETE_CONNECT_INPUT", `{"expectedRows":3}`, `[1,2]`, "P2025",
			"An operation failed because it depends on one or more records that were required but not found. Expected 3 records to be connected, found only 2."},
		{"INCOMPLETE_CONNECT_OUTPUT", `{"expectedRows":2,"relation":"cats","relationType":"many-to-many"}`, `[1]`, "P2018",
			"The required connected records were not found. Expected 2 records to be connected after connect operation on many-to-many relation 'cats', found 1."},
		{"RELATION_VIOLATION", `{"relation":"UserToProfile","modelA":"User","modelB":"Profile"}`, `[]`, "P2014",
			"The change you are trying to make would violate the required relation 'UserToProfile' between the `User` and `Profile` models."},
		{"RECORDS_NOT_CONNECTED", `{"relation":"posts","parent":"User","child":"Post"}`, `[]`, "P2017",
			"The records for relation `posts` between the `User` and `Post` models are not connected."},
	} {
		plan := `{"type":"validate","args":{"expr":` + value(c.data) + `,"rules":[{"type":"rowCountEq","args":5}],"errorIdentifier":"` + c.id + `","context":` + c.context + `}}`
		_, err := evalPlan(t, plan, "")
		var api *apiError
		if !errors.As(err, &api) || api.status != 400 || api.code != c.code || api.message != c.msg {
			t.Errorf("%s: got %#v, want %s %q", c.id, err, c.code, c.msg)
			continue
		}
		if meta, _ := jsonStringify(api.meta); meta != mustReformat(t, c.context) {
			t.Errorf("%s: meta %s, want the context %s", c.id, meta, c.context)
		}
	}
	// Rules: affected rows, never, and a passing validation returns the value.
	if _, err := evalPlan(t, `{"type":"validate","args":{"expr":`+value("3")+`,"rules":[{"type":"affectedRowCountEq","args":3},{"type":"rowCountNeq","args":0}],"errorIdentifier":"MISSING_RECORD","context":{"operation":"x"}}}`, ""); err != nil {
		t.Errorf("passing rules failed: %v", err)
	}
	if _, err := evalPlan(t, `{"type":"validate","args":{"expr":`+value("3")+`,"rules":[{"type":"never"}],"errorIdentifier":"MISSING_RECORD","context":{"operation":"x"}}}`, ""); err == nil {
		t.Error("a never rule passed")
	}
}

func TestDataMap(t *testing.T) {
	field := func(db, typ string, extra string) string {
		return `{"type":"field","dbName":"` + db + `","fieldType":{"arity":"required","type":"` + typ + `"` + extra + `}}`
	}
	structure := `{"type":"object","serializedName":null,"skipNulls":false,"fields":{` +
		`"id":` + field("id", "int", "") + `,"big":` + field("big", "bigint", "") + `,"dec":` + field("dec", "decimal", "") +
		`,"at":` + field("at", "datetime", "") + `,"day":` + field("day", "datetime", "") + `,"ok":` + field("ok", "boolean", "") +
		`,"f":` + field("f", "float", "") + `,"j":` + field("j", "json", "") + `,"o":` + field("o", "object", "") +
		`,"b64":` + field("b64", "bytes", `,"encoding":"base64"`) + `,"hex":` + field("hex", "bytes", `,"encoding":"hex"`) +
		`,"role":` + field("role", "enum", `,"name":"Role"`) + `,"tags":{"type":"field","dbName":"tags","fieldType":{"arity":"list","type":"string"}}` +
		`,"none":{"type":"field","dbName":"none","fieldType":{"arity":"list","type":"int"}}` +
		`,"nested":{"type":"object","serializedName":"rel","skipNulls":true,"fields":{"x":` + field("x", "string", "") + `}}}}`
	row := `{"id":"12","big":"9007199254740993","dec":"10.50","at":"2026-11-29T11:58:43.008+00:00","day":"2024-01-02","ok":"TRUE","f":"NaN",` +
		`"j":"{\"a\": [1.0]}","o":{"k":[1]},"b64":"AQID","hex":"\\x0102","role":"ADM","tags":["a"],"none":null,"rel":"[{\"x\":\"y\"},null]"}`
	plan := `{"type":"dataMap","args":{"expr":` + value("["+row+"]") + `,"structure":` + structure + `,"enums":{"Role":{"ADM":"ADMIN"}}}}`
	got, err := evalPlan(t, plan, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"id":12,"big":{"$type":"BigInt","value":"9007199254740993"},"dec":{"$type":"Decimal","value":"10.5"},` +
		`"at":{"$type":"DateTime","value":"2026-11-29T11:58:43.008Z"},"day":{"$type":"DateTime","value":"2024-01-02T00:00:00.000Z"},` +
		`"ok":true,"f":null,"j":{"$type":"Json","value":"{\"a\":[1]}"},"o":{"$type":"Json","value":"{\"k\":[1]}"},` +
		`"b64":{"$type":"Bytes","value":"AQID"},"hex":{"$type":"Bytes","value":"AQI="},"role":"ADMIN","tags":["a"],"none":[],` +
		`"nested":[{"x":"y"}]}]`
	if got != want {
		t.Errorf("dataMap:\n got %s\nwant %s", got, want)
	}
	// affectedRows, and mapping errors are P2023.
	if got, err := evalPlan(t, `{"type":"dataMap","args":{"expr":`+value("4")+`,"structure":{"type":"affectedRows"},"enums":{}}}`, ""); err != nil || got != `{"count":4}` {
		t.Errorf("affectedRows: %s %v", got, err)
	}
	for _, bad := range []string{`{"id":"x"}`, `{"id":"99999999999999999"}`, `{}`} {
		_, err := evalPlan(t, `{"type":"dataMap","args":{"expr":`+value(bad)+`,"structure":{"type":"object","serializedName":null,"skipNulls":false,"fields":{"id":`+field("id", "int", "")+`}},"enums":{}}}`, "")
		var api *apiError
		if !errors.As(err, &api) || api.code != "P2023" {
			t.Errorf("%s: got %v, want P2023", bad, err)
		}
	}
}

func TestPlanDecodingRefusesUnknownConstructs(t *testing.T) {
	for _, c := range []struct{ plan, what string }{
		{`{"type":"teleport","args":{}}`, `query plan node "teleport"`},
		{`{"type":"get","args":{"name":"x","fuzzy":true}}`, `field "fuzzy" of a "get" node`},
		{`{"type":"seq","args":[],"priority":1}`, `field "priority" of a "seq" node`},
		{value(`{"prisma__type":"generatorCall","prisma__value":{"name":"snowflake","args":[]}}`), `generator "snowflake"`},
		{`{"type":"query","args":{"type":"templateSql","fragments":[{"type":"parameterMatrix"}],"args":[],"argTypes":[],"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":false}}`, `SQL fragment type "parameterMatrix"`},
		{`{"type":"query","args":{"type":"mongoQuery","args":[],"argTypes":[]}}`, `query type "mongoQuery" in a "query" node`},
		{`{"type":"query","args":{"type":"rawSql","sql":"x","args":[],"argTypes":[{"arity":"set","scalarType":"int"}]}}`, `argument arity "set"`},
		{`{"type":"validate","args":{"expr":{"type":"unit"},"rules":[{"type":"rowCountGt","args":1}],"errorIdentifier":"MISSING_RECORD","context":{}}}`, `data rule "rowCountGt"`},
		{`{"type":"dataMap","args":{"expr":{"type":"unit"},"structure":{"type":"field","dbName":"a","fieldType":{"arity":"required","type":"vector"}},"enums":{}}}`, `result field type "vector"`},
	} {
		pv, err := parseJSON([]byte(c.plan))
		if err != nil {
			t.Fatal(err)
		}
		_, err = decodePlan(pv)
		var u *unsupportedError
		if !errors.As(err, &u) || u.what != c.what {
			t.Errorf("%s: got %v, want unsupported %s", c.plan, err, c.what)
		}
	}
	pv, _ := parseJSON([]byte(`{"type":"get","args":{"name":3}}`))
	var m *malformedError
	if _, err := decodePlan(pv); !errors.As(err, &m) || !strings.Contains(err.Error(), "plan.args.name") {
		t.Errorf("malformed plan: %v", err)
	}
}

func matches(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func mustReformat(t *testing.T, s string) string {
	t.Helper()
	out, err := reformatJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Decoded plans are cached and shared by requests: running one must not change it, even when
// the plan changes its records in place (mapRecord, join, process).
func TestCachedPlansStayUnchanged(t *testing.T) {
	ts := newTestServer(t, newDatabase(t, ""), nil)
	plan := `{"type":"join","args":{"parent":{"type":"mapRecord","args":{"expr":` + value(`{"id":1,"n":10}`) +
		`,"fields":{"n":{"type":"add","value":5}}}},"canAssumeStrictEquality":true,"children":[{"child":` +
		`{"type":"process","args":{"expr":` + value(`[{"pid":1,"t":"b"},{"pid":1,"t":"a"}]`) +
		`,"operations":{"pagination":null,"distinct":null,"reverse":true,"linkingFields":null,"nested":{}}}}` +
		`,"on":[["id","pid"]],"parentField":"kids","isRelationUnique":false}]}}`
	body := `{"operation":"findFirst","params":{},"plan":` + plan + `}`
	want := `{"data":{"id":1,"n":15,"kids":[{"pid":1,"t":"a"},{"pid":1,"t":"b"}]}}`
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if code, _, got := ts.do(t, http.MethodPost, "/query", body); code != http.StatusOK || got != want {
					t.Errorf("got %d %s, want %s", code, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := ts.plans.lru.Len(); n != 1 {
		t.Errorf("the plan cache holds %d plans, want 1", n)
	}
}
