package accelerate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"time"
)

// interpreter runs one request's query plan on one upstream connection.
type interpreter struct {
	conn *dbConn
	// reqCtx is the request's context: when it ended (timeout, client gone, transaction
	// expired) a failed statement is reported as that, not as the cancel's SQL error.
	reqCtx context.Context
	// inTx: the plan already runs inside a transaction (an interactive one, or a
	// transaction node), so transaction nodes and chunked statements need no BEGIN of their own.
	inTx    bool
	gens    *generators
	maxBind int
	comment string   // SQL comment appended to every statement ("" for none)
	logs    *logSink // query logs, when the client asked for them
}

// scope resolves parameter names: the request's params at the root, let bindings above it.
type scope struct {
	parent *scope
	vars   *record
}

func (s *scope) lookup(name string) (any, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars.get(name); ok {
			return v, true
		}
	}
	return undefined, false
}

// evalResult is a node's value and the last inserted id the database reported (never, for
// Postgres; kept for plans that carry one in a value node).
type evalResult struct {
	value  any
	lastID any
}

func result(v any) evalResult { return evalResult{value: v, lastID: undefined} }

// planError is an internal failure of a plan (the reference answers these with HTTP 500).
type planError struct{ msg string }

func (e *planError) Error() string { return e.msg }

func planErrorf(format string, args ...any) error { return &planError{fmt.Sprintf(format, args...)} }

// run evaluates the plan and returns its result value.
func (in *interpreter) run(ctx context.Context, plan node, params *record) (any, error) {
	r, err := in.eval(ctx, plan, &scope{vars: params})
	if err != nil {
		return nil, err
	}
	return r.value, nil
}

func (in *interpreter) eval(ctx context.Context, n node, sc *scope) (evalResult, error) {
	switch n := n.(type) {
	case *valueNode:
		v, err := in.evalArg(n.value, sc)
		return evalResult{value: v, lastID: n.lastInsertID}, err
	case *seqNode:
		r := result(undefined)
		for _, item := range n.items {
			var err error
			if r, err = in.eval(ctx, item, sc); err != nil {
				return r, err
			}
		}
		return r, nil
	case *getNode:
		v, _ := sc.lookup(n.name)
		return result(v), nil
	case *letNode:
		inner := &scope{parent: sc, vars: newRecord(len(n.bindings))}
		for _, b := range n.bindings {
			r, err := in.eval(ctx, b.expr, inner)
			if err != nil {
				return r, err
			}
			inner.vars.set(b.name, r.value)
		}
		return in.eval(ctx, n.expr, inner)
	case *getFirstNonEmptyNode:
		for _, name := range n.names {
			if v, _ := sc.lookup(name); !isEmpty(v) {
				return result(v), nil
			}
		}
		return result([]any{}), nil
	case *concatNode:
		parts, err := in.evalAll(ctx, n.items, sc)
		if err != nil {
			return evalResult{}, err
		}
		out := []any{}
		for _, p := range parts {
			out = append(out, asList(p)...)
		}
		return result(out), nil
	case *sumNode:
		parts, err := in.evalAll(ctx, n.items, sc)
		if err != nil {
			return evalResult{}, err
		}
		if len(parts) == 0 {
			return result(0.0), nil
		}
		acc := parts[0] // like reduce without an initial value: a single part is returned as is
		for _, p := range parts[1:] {
			a, err := asNumber(acc)
			if err != nil {
				return evalResult{}, err
			}
			b, err := asNumber(p)
			if err != nil {
				return evalResult{}, err
			}
			acc = a + b
		}
		return result(acc), nil
	case *uniqueNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		if l, ok := r.value.([]any); ok {
			switch len(l) {
			case 0:
				r.value = nil
			case 1:
				r.value = l[0]
			default:
				return r, planErrorf("Expected zero or one element, got %d", len(l))
			}
		}
		return r, nil
	case *requiredNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err == nil && isEmpty(r.value) {
			err = planErrorf("Required value is empty")
		}
		return r, err
	case *reverseNode:
		r, err := in.eval(ctx, n.expr, sc)
		if l, ok := r.value.([]any); ok && err == nil {
			reverseInPlace(l)
		}
		return r, err
	case *mapFieldNode:
		r, err := in.eval(ctx, n.records, sc)
		if err != nil {
			return r, err
		}
		r.value = mapRecordField(r.value, n.field)
		return r, nil
	case *joinNode:
		return in.evalJoin(ctx, n, sc)
	case *transactionNode:
		return in.inTransaction(ctx, func() (evalResult, error) { return in.eval(ctx, n.expr, sc) })
	case *dataMapNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		r.value, err = applyDataMap(r.value, n.structure, n.enums)
		return r, err
	case *validateNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		if err := validate(r.value, n); err != nil {
			return r, err
		}
		return r, nil
	case *ifNode:
		r, err := in.eval(ctx, n.value, sc)
		if err != nil {
			return r, err
		}
		if satisfies(r.value, n.rule) {
			return in.eval(ctx, n.then, sc)
		}
		return in.eval(ctx, n.els, sc)
	case *unitNode:
		return result(undefined), nil
	case *diffNode:
		from, err := in.eval(ctx, n.from, sc)
		if err != nil {
			return from, err
		}
		to, err := in.eval(ctx, n.to, sc)
		if err != nil {
			return to, err
		}
		out, err := diffRecords(asList(from.value), asList(to.value), n.fields)
		return result(out), err
	case *processNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		ops, err := in.resolveOps(n.ops, sc)
		if err != nil {
			return r, err
		}
		r.value, err = processRecords(r.value, ops)
		return r, err
	case *initializeRecordNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		rec := newRecord(len(n.fields))
		for _, f := range n.fields {
			if f.lastInsertID {
				rec.set(f.name, r.lastID)
				continue
			}
			v, err := in.evalArg(f.value, sc)
			if err != nil {
				return r, err
			}
			rec.set(f.name, v)
		}
		return evalResult{value: rec, lastID: r.lastID}, nil
	case *mapRecordNode:
		r, err := in.eval(ctx, n.expr, sc)
		if err != nil {
			return r, err
		}
		var rec *record
		switch v := r.value.(type) {
		case nil:
			rec = newRecord(len(n.fields))
		case *record:
			rec = v
		default:
			return r, planErrorf("Expected object, got %s", jsTypeOf(v))
		}
		for _, f := range n.fields {
			v, err := in.fieldOperation(f, rec.value(f.name), sc)
			if err != nil {
				return r, err
			}
			rec.set(f.name, v)
		}
		return evalResult{value: rec, lastID: r.lastID}, nil
	case *queryNode:
		return in.runStatements(ctx, n.q, sc, false)
	case *executeNode:
		return in.runStatements(ctx, n.q, sc, true)
	}
	return evalResult{}, planErrorf("unexpected node type %s", n.kindName())
}

func (in *interpreter) evalAll(ctx context.Context, nodes []node, sc *scope) ([]any, error) {
	out := make([]any, len(nodes))
	for i, n := range nodes {
		r, err := in.eval(ctx, n, sc)
		if err != nil {
			return nil, err
		}
		out[i] = r.value
	}
	return out, nil
}

// asNumber is the interpreter's number coercion: numbers, and strings through Number().
func asNumber(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		return jsStringToNumber(x), nil
	}
	return 0, planErrorf("Expected number, got %s", jsTypeOf(v))
}

func reverseInPlace(l []any) {
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
}

// mapRecordField replaces records by the value of one of their fields (null when absent).
func mapRecordField(v any, name string) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = mapRecordField(e, name)
		}
		return out
	case *record:
		if f := x.value(name); f != nil && f != any(undefined) {
			return f
		}
		return nil
	}
	return v
}

// evalArg resolves placeholders and generator calls, at the top level and inside arrays.
func (in *interpreter) evalArg(v any, sc *scope) (any, error) {
	for {
		switch x := v.(type) {
		case *paramRef:
			found, ok := sc.lookup(x.name)
			if !ok || found == any(undefined) {
				return nil, planErrorf("Missing value for query variable %s", x.name)
			}
			if s, isStr := found.(string); isStr && x.typ == "DateTime" {
				d, ok := parseJSDate(s)
				if !ok {
					return nil, userFacing("P2007", "Invalid input value: invalid DateTime \""+s+"\"", nil)
				}
				v = d
			} else {
				v = found
			}
			continue
		case *generatorCall:
			args := make([]any, len(x.args))
			for i, a := range x.args {
				var err error
				if args[i], err = in.evalArg(a, sc); err != nil {
					return nil, err
				}
			}
			g, err := in.gens.call(x.name, args)
			if err != nil {
				return nil, err
			}
			v = g
			continue
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				var err error
				if out[i], err = in.evalArg(e, sc); err != nil {
					return nil, err
				}
			}
			return out, nil
		case *record:
			// A literal of the plan: the plan is shared (planCache) and joins and mapRecord
			// change records in place, so each evaluation gets its own copy.
			return cloneValue(x), nil
		}
		return v, nil
	}
}

// cloneValue deep-copies records and arrays.
func cloneValue(v any) any {
	switch x := v.(type) {
	case *record:
		out := &record{fields: make([]field, len(x.fields))}
		for i, f := range x.fields {
			out.fields[i] = field{f.name, cloneValue(f.value)}
		}
		if x.index != nil {
			out.index = make(map[string]int, len(x.index))
			for k, i := range x.index {
				out.index[k] = i
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

func (in *interpreter) fieldOperation(f fieldOperation, current any, sc *scope) (any, error) {
	operand, err := in.evalArg(f.value, sc)
	if err != nil || f.op == "set" {
		return operand, err
	}
	a, err := asNumber(current)
	if err != nil {
		return nil, err
	}
	b, err := asNumber(operand)
	if err != nil {
		return nil, err
	}
	switch f.op {
	case "add":
		return a + b, nil
	case "subtract":
		return a - b, nil
	case "multiply":
		return a * b, nil
	}
	if b == 0 { // divide
		return nil, nil
	}
	return a / b, nil
}

// resolveOps evaluates the placeholders of a process node's cursors (the plan itself is
// shared and never changed).
func (in *interpreter) resolveOps(ops *inMemoryOps, sc *scope) (*inMemoryOps, error) {
	out := *ops
	if ops.pagination != nil && ops.pagination.cursor != nil {
		p := *ops.pagination
		cursor := newRecord(len(p.cursor.fields))
		for _, f := range p.cursor.fields {
			v, err := in.evalArg(f.value, sc)
			if err != nil {
				return nil, err
			}
			cursor.set(f.name, v)
		}
		p.cursor = cursor
		out.pagination = &p
	}
	if len(ops.nested) > 0 {
		out.nested = make([]nestedOps, len(ops.nested))
		for i, n := range ops.nested {
			child, err := in.resolveOps(n.ops, sc)
			if err != nil {
				return nil, err
			}
			out.nested[i] = nestedOps{n.field, child}
		}
	}
	return &out, nil
}

// runStatements renders a query/execute node and runs its statements; several statements
// (a chunked template) run in one transaction.
func (in *interpreter) runStatements(ctx context.Context, q *dbQuery, sc *scope, execute bool) (evalResult, error) {
	args := make([]any, len(q.args))
	for i, a := range q.args {
		var err error
		if args[i], err = in.evalArg(a, sc); err != nil {
			return evalResult{}, err
		}
	}
	statements, err := renderQuery(q, args, in.maxBind)
	if err != nil {
		return evalResult{}, err
	}
	runAll := func() (evalResult, error) {
		var affected float64
		var all *resultSet
		for _, st := range statements {
			rs, err := in.statement(ctx, st, q.raw, !execute)
			if err != nil {
				return evalResult{}, err
			}
			affected += float64(rs.affected)
			if all == nil {
				all = rs
			} else {
				all.rows = append(all.rows, rs.rows...)
			}
		}
		if execute {
			return result(affected), nil
		}
		if all == nil {
			all = &resultSet{}
		}
		if q.raw {
			return result(rawResult(all)), nil
		}
		return result(rowRecords(all)), nil
	}
	if len(statements) > 1 {
		return in.inTransaction(ctx, runAll)
	}
	return runAll()
}

// statement runs one rendered statement with its comment and log entry.
func (in *interpreter) statement(ctx context.Context, st renderedQuery, raw, readRows bool) (*resultSet, error) {
	sql := st.sql
	if in.comment != "" {
		sql += " " + in.comment
	}
	params, err := encodeParams(st.args, st.argTypes)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rs, err := in.conn.runStatement(ctx, sql, params, readRows)
	in.logs.query(start, time.Since(start), sql, st.args)
	if err != nil {
		return nil, in.dbError(err, raw)
	}
	return rs, nil
}

// dbError turns a failed statement into the error the client gets.
func (in *interpreter) dbError(err error, raw bool) error {
	var api *apiError
	if errors.As(err, &api) {
		return api
	}
	if in.reqCtx != nil && in.reqCtx.Err() != nil {
		if cause := context.Cause(in.reqCtx); errors.Is(cause, errQueryTimeout) {
			return resourceLimit("P6004", "Query timeout exceeded")
		} else if cause != nil {
			return cause
		}
	}
	d := asDriverError(err)
	if d == nil && !errors.As(err, &d) {
		return err
	}
	api = userFacingDBError(d, raw)
	api.cause = err
	return api
}

// inTransaction runs fn inside a database transaction unless the plan already runs in one.
// The COMMIT and ROLLBACK are logged as queries, the BEGIN is not (as in the reference).
func (in *interpreter) inTransaction(ctx context.Context, fn func() (evalResult, error)) (evalResult, error) {
	if in.inTx {
		return fn()
	}
	if _, err := in.conn.run(ctx, "BEGIN"); err != nil {
		return evalResult{}, in.dbError(err, false)
	}
	in.inTx = true
	r, err := fn()
	in.inTx = false
	end := "COMMIT"
	if err != nil {
		end = "ROLLBACK"
	}
	start := time.Now()
	_, endErr := in.conn.run(context.WithoutCancel(ctx), end)
	in.logs.query(start, time.Since(start), end, nil)
	if err != nil {
		return r, err
	}
	if endErr != nil {
		return r, in.dbError(endErr, false)
	}
	return r, nil
}

// rowRecords turns rows into records keyed by column name (a repeated name keeps its first
// position and its last value). The columns' places are worked out once, and the records of
// all rows made in two allocations.
func rowRecords(rs *resultSet) []any {
	shape := newRecord(len(rs.columns))
	slots := make([]int, len(rs.columns))
	for j, name := range rs.columns {
		shape.set(name, nil)
		slots[j] = shape.find(name)
	}
	n := len(shape.fields)
	records := make([]record, len(rs.rows))
	fields := make([]field, n*len(rs.rows))
	out := make([]any, len(rs.rows))
	for i, row := range rs.rows {
		rec := &records[i]
		rec.fields = fields[i*n : (i+1)*n : (i+1)*n] // a field added later must not spill into the next record
		copy(rec.fields, shape.fields)
		for j, v := range row {
			rec.fields[slots[j]].value = v
		}
		if shape.index != nil {
			rec.index = maps.Clone(shape.index)
		}
		out[i] = rec
	}
	return out
}

// rawResult is a raw query's {columns, types, rows}.
func rawResult(rs *resultSet) *record {
	columns := make([]any, len(rs.columns))
	types := make([]any, len(rs.types))
	for i := range rs.columns {
		columns[i] = rs.columns[i]
		types[i] = rs.types[i]
	}
	rows := make([]any, len(rs.rows))
	for i, row := range rs.rows {
		out := make([]any, len(row))
		for j, v := range row {
			out[j] = rawValue(v, rs.types[j])
		}
		rows[i] = out
	}
	return recordOf("columns", columns, "types", types, "rows", rows)
}

// rawValue is how a raw query presents a value: json parsed, everything else as read.
func rawValue(v any, typ string) any {
	switch typ {
	case "json":
		if s, ok := v.(string); ok {
			if parsed, err := parseJSON([]byte(s)); err == nil {
				return parsed
			}
		}
	case "json-array":
		if l, ok := v.([]any); ok {
			out := make([]any, len(l))
			for i, e := range l {
				out[i] = rawValue(e, "json")
			}
			return out
		}
	case "int":
		if f, ok := v.(float64); ok {
			return math.Trunc(f)
		}
	}
	return v
}
