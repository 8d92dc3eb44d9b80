package accelerate

import (
	"fmt"
	"strconv"
	"strings"
)

// renderedQuery is one SQL statement ready to run: text with $n placeholders, its arguments
// and their types (one per placeholder).
type renderedQuery struct {
	sql      string
	args     []any
	argTypes []argType
}

// renderQuery turns a query node's statement into one or more statements. A chunkable
// template whose parameters exceed maxBind is split on its largest list (an IN list, the rows
// of a multi-row INSERT) into several statements that each fit.
func renderQuery(q *dbQuery, args []any, maxBind int) ([]renderedQuery, error) {
	if q.raw {
		return []renderedQuery{{sql: q.sql, args: args, argTypes: q.argTypes}}, nil
	}
	if s := q.static; s != nil {
		if maxBind > 0 && s.params > maxBind {
			return nil, userFacing("P2029", "The query parameter limit supported by your database is exceeded.", nil)
		}
		return []renderedQuery{{sql: s.sql, args: args[:s.params], argTypes: s.argTypes}}, nil
	}
	chunks := [][]any{args}
	if q.chunkable {
		var err error
		if chunks, err = chunkParams(q.fragments, args, maxBind); err != nil {
			return nil, err
		}
	}
	out := make([]renderedQuery, 0, len(chunks))
	for _, params := range chunks {
		r, err := renderTemplate(q, params)
		if err != nil {
			return nil, err
		}
		if maxBind > 0 && len(r.args) > maxBind {
			return nil, userFacing("P2029", "The query parameter limit supported by your database is exceeded.", nil)
		}
		out = append(out, r)
	}
	return out, nil
}

// staticStatement is a template rendered once, when its plan is decoded: one whose fragments
// are text and single parameters renders the same SQL and argument types for every request
// (there is no list to expand or split), and most templates are of that kind.
type staticStatement struct {
	sql      string
	params   int // the first params arguments are the statement's, in placeholder order
	argTypes []argType
}

// prerender sets q.static when q's statement does not depend on its arguments.
func (q *dbQuery) prerender() {
	if q.raw {
		return
	}
	n := 0
	for _, f := range q.fragments {
		switch f.typ {
		case "stringChunk":
		case "parameter":
			n++
		default:
			return
		}
	}
	if n > len(q.args) {
		return // renderTemplate reports the malformed template when it runs
	}
	r, err := renderTemplate(q, q.args[:n])
	if err != nil {
		return
	}
	q.static = &staticStatement{sql: r.sql, params: n, argTypes: r.argTypes}
}

// fragmentParam pairs a parameter-taking fragment with its argument.
type fragmentParam struct {
	frag  *fragment
	value any // parameter: the value; tuple: []any; tuple list: [][]any as []any
	typ   argType
}

// pairFragments gives each parameter-taking fragment its argument, in order.
func pairFragments(frags []fragment, params []any, types []argType) ([]fragmentParam, error) {
	var out []fragmentParam
	i := 0
	for k := range frags {
		f := &frags[k]
		if f.typ == "stringChunk" {
			continue
		}
		if i >= len(params) {
			return nil, fmt.Errorf("malformed query template: fragments attempt to read over %d parameters", len(params))
		}
		fp := fragmentParam{frag: f, value: params[i]}
		if i < len(types) {
			fp.typ = types[i]
		}
		switch f.typ {
		case "parameterTuple":
			fp.value = asList(params[i])
		case "parameterTupleList":
			list, ok := params[i].([]any)
			if !ok {
				return nil, fmt.Errorf("malformed query template: tuple list expected")
			}
			if len(list) == 0 {
				return nil, fmt.Errorf("malformed query template: tuple list cannot be empty")
			}
			for _, t := range list {
				if _, ok := t.([]any); !ok {
					return nil, fmt.Errorf("malformed query template: tuple expected")
				}
			}
		}
		out = append(out, fp)
		i++
	}
	return out, nil
}

// count is the number of placeholders the fragment renders.
func (fp *fragmentParam) count() int {
	switch fp.frag.typ {
	case "parameterTuple":
		return len(fp.value.([]any))
	case "parameterTupleList":
		n := 0
		for _, t := range fp.value.([]any) {
			n += len(t.([]any))
		}
		return n
	}
	return 1
}

// flatten appends the fragment's values in placeholder order.
func (fp *fragmentParam) flatten(dst []any) []any {
	switch fp.frag.typ {
	case "parameterTuple":
		return append(dst, fp.value.([]any)...)
	case "parameterTupleList":
		for _, t := range fp.value.([]any) {
			dst = append(dst, t.([]any)...)
		}
		return dst
	}
	return append(dst, fp.value)
}

func renderTemplate(q *dbQuery, params []any) (renderedQuery, error) {
	pairs, err := pairFragments(q.fragments, params, q.argTypes)
	if err != nil {
		return renderedQuery{}, err
	}
	var sb strings.Builder
	number := 1
	placeholder := func() {
		sb.WriteString(q.prefix)
		if q.numbered {
			sb.WriteString(strconv.Itoa(number))
		}
		number++
	}
	var r renderedQuery
	p := 0
	for k := range q.fragments {
		f := &q.fragments[k]
		if f.typ == "stringChunk" {
			sb.WriteString(f.chunk)
			continue
		}
		fp := &pairs[p]
		p++
		switch f.typ {
		case "parameter":
			placeholder()
		case "parameterTuple":
			items := fp.value.([]any)
			sb.WriteByte('(')
			if len(items) == 0 {
				sb.WriteString("NULL")
			}
			for i := range items {
				if i > 0 {
					sb.WriteString(f.itemSeparator)
				}
				sb.WriteString(f.itemPrefix)
				placeholder()
				sb.WriteString(f.itemSuffix)
			}
			sb.WriteByte(')')
		case "parameterTupleList":
			for i, t := range fp.value.([]any) {
				if i > 0 {
					sb.WriteString(f.groupSeparator)
				}
				sb.WriteString(f.itemPrefix)
				for j := range t.([]any) {
					if j > 0 {
						sb.WriteString(f.itemSeparator)
					}
					placeholder()
				}
				sb.WriteString(f.itemSuffix)
			}
		}
		before := len(r.args)
		r.args = fp.flatten(r.args)
		added := len(r.args) - before
		if fp.typ.arity == "tuple" {
			n := len(fp.typ.elements)
			if n == 0 || added%n != 0 {
				return r, fmt.Errorf("malformed query template: %d parameters for a tuple of arity %d", added, n)
			}
			for i := 0; i < added/n; i++ {
				r.argTypes = append(r.argTypes, fp.typ.elements...)
			}
		} else {
			for i := 0; i < added; i++ {
				r.argTypes = append(r.argTypes, fp.typ)
			}
		}
	}
	r.sql = sb.String()
	return r, nil
}

// chunkParams splits the parameters of a chunkable template so each statement stays within
// maxBind placeholders. Only the fragment with the most parameters is split, and only when
// everything else fits beside a part of it; otherwise the template is rendered whole (and
// refused with P2029 if it is too large).
func chunkParams(frags []fragment, params []any, maxBind int) ([][]any, error) {
	if maxBind <= 0 {
		return [][]any{params}, nil
	}
	pairs, err := pairFragments(frags, params, nil)
	if err != nil {
		return nil, err
	}
	total, largest := 0, 0
	for i := range pairs {
		n := pairs[i].count()
		total += n
		largest = max(largest, n)
	}
	chunks := [][]any{{}}
	split := false // only one fragment is ever split
	for i := range pairs {
		fp := &pairs[i]
		n := fp.count()
		var parts []any
		switch fp.frag.typ {
		case "parameter":
			parts = []any{fp.value}
		case "parameterTuple":
			items := fp.value.([]any)
			if !split && n == largest && total > maxBind && total-n < maxBind {
				split = true
				size := maxBind - (total - n)
				for start := 0; start < len(items); start += size {
					parts = append(parts, items[start:min(start+size, len(items))])
				}
			} else {
				parts = []any{items}
			}
		case "parameterTupleList":
			tuples := fp.value.([]any)
			if !split && n == largest && total > maxBind {
				split = true
				var current []any
				used := 0
				for _, t := range tuples {
					width := len(t.([]any))
					if len(current) > 0 && total-n+used+width > maxBind {
						parts = append(parts, current)
						current, used = nil, 0
					}
					current = append(current, t)
					used += width
				}
				if len(current) > 0 {
					parts = append(parts, current)
				}
			} else {
				parts = []any{tuples}
			}
		}
		next := make([][]any, 0, len(chunks)*len(parts))
		for _, c := range chunks {
			for _, part := range parts {
				next = append(next, append(append(make([]any, 0, len(c)+1), c...), part))
			}
		}
		chunks = next
	}
	return chunks, nil
}
