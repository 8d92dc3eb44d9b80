package accelerate

import (
	"bytes"
	"context"
	"sort"
	"strconv"
	"time"
)

// Record operations of the plan: validation rules, joins of child rows to their parents,
// in-memory pagination/distinct/reverse, and set difference.

// satisfies reports whether data passes a rule.
func satisfies(data any, rule dataRule) bool {
	count := func() float64 {
		switch x := data.(type) {
		case []any:
			return float64(len(x))
		case nil:
			return 0
		}
		return 1
	}
	switch rule.typ {
	case "rowCountEq":
		return count() == rule.arg
	case "rowCountNeq":
		return count() != rule.arg
	case "affectedRowCountEq":
		n, ok := data.(float64)
		return ok && n == rule.arg
	}
	return false // never
}

// validate checks the rules of a validate node and returns its user-facing error.
func validate(data any, n *validateNode) error {
	for _, r := range n.rules {
		if !satisfies(data, r) {
			return validationError(data, n)
		}
	}
	return nil
}

func validationError(data any, n *validateNode) *apiError {
	ctx := func(key string) string { return jsToString(n.context.value(key)) }
	found := func() string {
		if l, ok := data.([]any); ok {
			return strconv.Itoa(len(l))
		}
		return jsToString(data)
	}
	var code, msg string
	switch n.errorIdentifier {
	case "RELATION_VIOLATION":
		code = "P2014"
		msg = "The change you are trying to make would violate the required relation '" + ctx("relation") +
			"' between the `" + ctx("modelA") + "` and `" + ctx("modelB") + "` models."
	case "MISSING_RECORD":
		code = "P2025"
		msg = "An operation failed because it depends on one or more records that were required but not found. No record was found for " + ctx("operation") + "."
	case "MISSING_RELATED_RECORD":
		code = "P2025"
		hint := ""
		if v := n.context.value("neededFor"); jsTruthy(v) {
			hint = " (needed to " + jsToString(v) + ")"
		}
		msg = "An operation failed because it depends on one or more records that were required but not found. No '" +
			ctx("model") + "' record" + hint + " was found for " + ctx("operation") + " on " + ctx("relationType") +
			" relation '" + ctx("relation") + "'."
	case "INCOMPLETE_CONNECT_INPUT":
		code = "P2025"
		msg = "An operation failed because it depends on one or more records that were required but not found. Expected " +
			ctx("expectedRows") + " records to be connected, found only " + found() + "."
	case "INCOMPLETE_CONNECT_OUTPUT":
		code = "P2018"
		msg = "The required connected records were not found. Expected " + ctx("expectedRows") +
			" records to be connected after connect operation on " + ctx("relationType") + " relation '" +
			ctx("relation") + "', found " + found() + "."
	case "RECORDS_NOT_CONNECTED":
		code = "P2017"
		msg = "The records for relation `" + ctx("relation") + "` between the `" + ctx("parent") + "` and `" +
			ctx("child") + "` models are not connected."
	}
	return userFacing(code, msg, n.context)
}

// recordKey identifies a record by some of its fields: the JSON of their values, as the
// reference builds it, after the optional casts.
func recordKey(rec *record, fields []string, casts []func(any) any) string {
	return string(appendRecordKey(nil, rec, fields, casts))
}

// appendRecordKey appends recordKey(rec, fields, casts) to dst, so that a caller looking keys
// up in a map (m[string(key)]) makes no string for them.
func appendRecordKey(dst []byte, rec *record, fields []string, casts []func(any) any) []byte {
	start := len(dst)
	dst = append(dst, '[')
	for i, f := range fields {
		v := rec.value(f)
		if v == any(undefined) {
			v = nil
		}
		if i < len(casts) && casts[i] != nil && v != nil {
			v = casts[i](v)
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendKeyJSON(dst, v); err != nil {
			return append(append(dst[:start], 0), err.Error()...)
		}
	}
	return append(dst, ']')
}

func asRecord(v any) (*record, error) {
	if r, ok := v.(*record); ok {
		return r, nil
	}
	return nil, planErrorf("Expected object, got %s", jsTypeOf(v))
}

// evalJoin attaches each child query's rows to the parent records they belong to.
func (in *interpreter) evalJoin(ctx context.Context, n *joinNode, sc *scope) (evalResult, error) {
	parent, err := in.eval(ctx, n.parent, sc)
	if err != nil || parent.value == nil {
		return parent, err
	}
	children := make([]any, len(n.children))
	for i, c := range n.children {
		r, err := in.eval(ctx, c.child, sc)
		if err != nil {
			return r, err
		}
		children[i] = r.value
	}
	parents := asList(parent.value)
	for i, c := range n.children {
		parentKeys := make([]string, len(c.on))
		childKeys := make([]string, len(c.on))
		for k, pair := range c.on {
			parentKeys[k], childKeys[k] = pair[0], pair[1]
		}
		byKey := map[string][]*record{}
		var key []byte
		for _, p := range parents {
			rec, err := asRecord(p)
			if err != nil {
				return parent, err
			}
			key = appendRecordKey(key[:0], rec, parentKeys, nil)
			if same, ok := byKey[string(key)]; ok {
				byKey[string(key)] = append(same, rec)
			} else {
				byKey[string(key)] = []*record{rec}
			}
			if c.isRelationUnique {
				rec.set(c.parentField, nil)
			} else {
				rec.set(c.parentField, []any{})
			}
		}
		var casts []func(any) any
		if !n.canAssumeStrictEquality {
			casts = inferKeyCasts(parents, parentKeys)
		}
		for _, child := range asList(children[i]) {
			if child == nil {
				continue
			}
			rec, err := asRecord(child)
			if err != nil {
				return parent, err
			}
			key = appendRecordKey(key[:0], rec, childKeys, casts)
			for _, p := range byKey[string(key)] {
				if c.isRelationUnique {
					p.set(c.parentField, rec)
				} else {
					list, _ := p.value(c.parentField).([]any)
					p.set(c.parentField, append(list, rec))
				}
			}
		}
	}
	return parent, nil
}

// inferKeyCasts picks, for each key, a cast that makes child values compare like the
// parents' values (a parent's number key matches a child's "1").
func inferKeyCasts(parents []any, keys []string) []func(any) any {
	casts := make([]func(any) any, len(keys))
	found := 0
	for _, p := range parents {
		rec, ok := p.(*record)
		if !ok {
			continue
		}
		for i, k := range keys {
			v := rec.value(k)
			if v == nil || casts[i] != nil {
				continue
			}
			switch jsTypeOf(v) {
			case "number":
				casts[i] = func(x any) any { return jsToNumber(x) }
			case "string":
				casts[i] = func(x any) any { return jsToString(x) }
			case "boolean":
				casts[i] = func(x any) any { return jsTruthy(x) }
			}
			found++
		}
		if found == len(keys) {
			break
		}
	}
	return casts
}

// diffRecords returns the records of from whose key fields match no record of to.
func diffRecords(from, to []any, fields []string) ([]any, error) {
	key := func(item any) (string, error) {
		if item == nil {
			return "\x00null", nil
		}
		rec, err := asRecord(item)
		if err != nil {
			return "", err
		}
		return recordKey(rec, fields, nil), nil
	}
	exclude := map[string]bool{}
	for _, t := range to {
		k, err := key(t)
		if err != nil {
			return nil, err
		}
		exclude[k] = true
	}
	out := []any{}
	for _, f := range from {
		k, err := key(f)
		if err != nil {
			return nil, err
		}
		if !exclude[k] {
			out = append(out, f)
		}
	}
	return out, nil
}

// processRecords applies in-memory operations (distinct, cursor/skip/take, reverse, and the
// same for nested relations) to a record or a list of records.
func processRecords(v any, ops *inMemoryOps) (any, error) {
	switch x := v.(type) {
	case nil, undefinedT:
		return v, nil
	case string:
		parsed, err := parseJSON([]byte(x))
		if err != nil {
			return nil, planErrorf("%v", err)
		}
		return processRecords(parsed, ops)
	case []any:
		return processMany(x, ops)
	case *record:
		return processOne(x, ops)
	}
	return v, nil
}

func processOne(rec *record, ops *inMemoryOps) (any, error) {
	if p := ops.pagination; p != nil {
		if p.skip != nil && *p.skip > 0 {
			return nil, nil
		}
		if p.take != nil && *p.take == 0 {
			return nil, nil
		}
		if p.cursor != nil && !keysMatch(rec, p.cursor) {
			return nil, nil
		}
	}
	return processNested(rec, ops.nested)
}

func processNested(rec *record, nested []nestedOps) (*record, error) {
	for _, n := range nested {
		v, err := processRecords(rec.value(n.field), n.ops)
		if err != nil {
			return nil, err
		}
		rec.set(n.field, v)
	}
	return rec, nil
}

func processMany(records []any, ops *inMemoryOps) (any, error) {
	if ops.hasDistinct {
		fields := ops.distinct
		if ops.hasLinking {
			fields = append(append([]string{}, ops.distinct...), ops.linkingFields...)
		}
		var err error
		if records, err = distinctBy(records, fields); err != nil {
			return nil, err
		}
	}
	if ops.pagination != nil {
		var err error
		if records, err = paginate(records, ops.pagination, ops.linkingFields, ops.hasLinking); err != nil {
			return nil, err
		}
	}
	if ops.reverse {
		reverseInPlace(records)
	}
	if len(ops.nested) == 0 {
		return records, nil
	}
	out := make([]any, len(records))
	for i, r := range records {
		rec, err := asRecord(r)
		if err != nil {
			return nil, err
		}
		if out[i], err = processNested(rec, ops.nested); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func distinctBy(records []any, fields []string) ([]any, error) {
	seen := map[string]bool{}
	out := []any{}
	for _, r := range records {
		rec, err := asRecord(r)
		if err != nil {
			return nil, err
		}
		k := recordKey(rec, fields, nil)
		if !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// paginate applies cursor/skip/take to the whole list, or with linking fields to each
// parent's rows separately (groups in ascending key order).
func paginate(records []any, p *pagination, linking []string, hasLinking bool) ([]any, error) {
	if !hasLinking {
		return paginateList(records, p), nil
	}
	type group struct {
		key     string
		records []any
	}
	var groups []group
	byKey := map[string]int{} // index in groups
	var key []byte
	for _, r := range records {
		rec, err := asRecord(r)
		if err != nil {
			return nil, err
		}
		key = appendRecordKey(key[:0], rec, linking, nil)
		if i, ok := byKey[string(key)]; ok {
			groups[i].records = append(groups[i].records, r)
		} else {
			byKey[string(key)] = len(groups)
			groups = append(groups, group{string(key), []any{r}})
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].key < groups[j].key })
	out := []any{}
	for _, g := range groups {
		out = append(out, paginateList(g.records, p)...)
	}
	return out, nil
}

func paginateList(list []any, p *pagination) []any {
	start := 0
	if p.cursor != nil {
		start = -1
		for i, item := range list {
			if rec, ok := item.(*record); ok && keysMatch(rec, p.cursor) {
				start = i
				break
			}
		}
		if start < 0 {
			return []any{}
		}
	}
	if p.skip != nil {
		start += int(*p.skip)
	}
	end := len(list)
	if p.take != nil {
		end = start + int(*p.take)
	}
	start = max(0, min(start, len(list)))
	end = max(start, min(end, len(list)))
	return list[start:end]
}

// keysMatch reports whether the fields two records have in common (those of the smaller
// one) hold equal values, comparing numbers, decimals, dates and bytes by value across their
// representations.
func keysMatch(a, b *record) bool {
	small, other := a, b
	if len(b.fields) < len(a.fields) {
		small, other = b, a
	}
	for _, f := range small.fields {
		if !valuesMatch(f.value, other.value(f.name)) {
			return false
		}
	}
	return true
}

func valuesMatch(l, r any) bool {
	lt, rt := jsTypeOf(l), jsTypeOf(r)
	if lt == rt && lt != "object" {
		return l == r
	}
	_, lb := l.([]byte)
	_, rb := r.([]byte)
	if lb || rb {
		x, okx := asBytes(l)
		y, oky := asBytes(r)
		return okx && oky && bytes.Equal(x, y)
	}
	_, ld := l.(time.Time)
	_, rd := r.(time.Time)
	if ld || rd {
		x, errx := toDate(l)
		y, erry := toDate(r)
		return errx == nil && erry == nil && x.Equal(y)
	}
	if lt == "number" || rt == "number" {
		x, okx := numberOf(l)
		y, oky := numberOf(r)
		return okx && oky && x == y
	}
	return deepEqual(l, r)
}

func asBytes(v any) ([]byte, bool) {
	switch x := v.(type) {
	case []byte:
		return x, true
	case string:
		return decodeBase64Lenient(x), true
	}
	return nil, false
}

func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		return jsStringToNumber(x), true
	}
	return 0, false
}

// deepEqual is the reference's structural equality of plain values.
func deepEqual(a, b any) bool {
	switch x := a.(type) {
	case *record:
		y, ok := b.(*record)
		if !ok || len(x.fields) != len(y.fields) {
			return false
		}
		for _, f := range x.fields {
			v, ok := y.get(f.name)
			if !ok || !deepEqual(f.value, v) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !deepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case tagged:
		y, ok := b.(tagged)
		return ok && x.typ == y.typ && deepEqual(x.value, y.value)
	}
	return a == b
}
