package accelerate

import (
	"fmt"
	"strconv"
)

// decodePlan turns the parsed JSON of a plan into typed nodes and refuses anything this
// interpreter does not know (a node kind, a field, a fragment type, a generator), so an
// unknown construct fails loudly instead of being half understood.

// unsupportedError names a plan construct this server does not implement.
type unsupportedError struct{ what, path string }

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("%s (at %s) is not supported by this server", e.what, e.path)
}

// malformedError is a plan that does not have the shape its kind requires.
type malformedError struct{ msg, path string }

func (e *malformedError) Error() string {
	return fmt.Sprintf("malformed query plan at %s: %s", e.path, e.msg)
}

// planDecoder walks the parsed JSON of a plan.
type planDecoder struct{}

func decodePlan(v any) (node, error) {
	var d planDecoder
	return d.node(v, "plan")
}

func (d *planDecoder) malformed(path, msg string) error {
	return &malformedError{msg: msg, path: path}
}

// object checks that v is an object whose keys are all in allowed.
func (d *planDecoder) object(v any, path, what string, allowed ...string) (*record, error) {
	r, ok := v.(*record)
	if !ok {
		return nil, d.malformed(path, "expected an object")
	}
	for _, f := range r.fields {
		known := false
		for _, a := range allowed {
			if f.name == a {
				known = true
				break
			}
		}
		if !known {
			return nil, &unsupportedError{what: fmt.Sprintf("field %q of %s", f.name, what), path: path}
		}
	}
	return r, nil
}

func (d *planDecoder) str(r *record, key, path string) (string, error) {
	v, ok := r.get(key)
	s, isStr := v.(string)
	if !ok || !isStr {
		return "", d.malformed(path+"."+key, "expected a string")
	}
	return s, nil
}

func (d *planDecoder) optStr(r *record, key, path string) (string, error) {
	v, ok := r.get(key)
	if !ok || v == nil {
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", d.malformed(path+"."+key, "expected a string")
	}
	return s, nil
}

func (d *planDecoder) boolean(r *record, key, path string, required bool) (bool, error) {
	v, ok := r.get(key)
	if !ok && !required {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, d.malformed(path+"."+key, "expected a boolean")
	}
	return b, nil
}

func (d *planDecoder) strings(v any, path string) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, d.malformed(path, "expected an array of strings")
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, d.malformed(path+"["+strconv.Itoa(i)+"]", "expected a string")
		}
		out[i] = s
	}
	return out, nil
}

func (d *planDecoder) nodes(v any, path string) ([]node, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, d.malformed(path, "expected an array of nodes")
	}
	out := make([]node, len(l))
	for i, e := range l {
		n, err := d.node(e, path+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func (d *planDecoder) node(v any, path string) (node, error) {
	r, ok := v.(*record)
	if !ok {
		return nil, d.malformed(path, "expected a node object")
	}
	kind, err := d.str(r, "type", path)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("a %q node", kind)
	args := r.value("args")
	apath := path + ".args"
	checkKeys := func(allowed ...string) error {
		_, err := d.object(r, path, what, append([]string{"type"}, allowed...)...)
		return err
	}
	switch kind {
	case "value":
		if err := checkKeys("args", "lastInsertId"); err != nil {
			return nil, err
		}
		val, err := d.prismaValue(args, apath)
		if err != nil {
			return nil, err
		}
		n := &valueNode{value: val, lastInsertID: undefined}
		if id, ok := r.get("lastInsertId"); ok && id != nil {
			if n.lastInsertID, ok = id.(string); !ok {
				return nil, d.malformed(path+".lastInsertId", "expected a string")
			}
		}
		return n, nil
	case "unit":
		if err := checkKeys("args"); err != nil {
			return nil, err
		}
		return &unitNode{}, nil
	}
	if err := checkKeys("args"); err != nil {
		return nil, err
	}
	switch kind {
	case "seq", "sum", "concat":
		items, err := d.nodes(args, apath)
		if err != nil {
			return nil, err
		}
		switch kind {
		case "seq":
			return &seqNode{items}, nil
		case "sum":
			return &sumNode{items}, nil
		}
		return &concatNode{items}, nil
	case "unique", "required", "reverse", "transaction":
		child, err := d.node(args, apath)
		if err != nil {
			return nil, err
		}
		switch kind {
		case "unique":
			return &uniqueNode{child}, nil
		case "required":
			return &requiredNode{child}, nil
		case "reverse":
			return &reverseNode{child}, nil
		}
		return &transactionNode{child}, nil
	case "get":
		a, err := d.object(args, apath, what, "name")
		if err != nil {
			return nil, err
		}
		name, err := d.str(a, "name", apath)
		return &getNode{name}, err
	case "getFirstNonEmpty":
		a, err := d.object(args, apath, what, "names")
		if err != nil {
			return nil, err
		}
		names, err := d.strings(a.value("names"), apath+".names")
		return &getFirstNonEmptyNode{names}, err
	case "let":
		return d.letNode(args, apath, what)
	case "join":
		return d.joinNode(args, apath, what)
	case "mapField":
		a, err := d.object(args, apath, what, "field", "records")
		if err != nil {
			return nil, err
		}
		name, err := d.str(a, "field", apath)
		if err != nil {
			return nil, err
		}
		records, err := d.node(a.value("records"), apath+".records")
		return &mapFieldNode{field: name, records: records}, err
	case "dataMap":
		return d.dataMapNode(args, apath, what)
	case "validate":
		return d.validateNode(args, apath, what)
	case "if":
		a, err := d.object(args, apath, what, "value", "rule", "then", "else")
		if err != nil {
			return nil, err
		}
		n := &ifNode{}
		if n.value, err = d.node(a.value("value"), apath+".value"); err != nil {
			return nil, err
		}
		if n.rule, err = d.rule(a.value("rule"), apath+".rule"); err != nil {
			return nil, err
		}
		if n.then, err = d.node(a.value("then"), apath+".then"); err != nil {
			return nil, err
		}
		n.els, err = d.node(a.value("else"), apath+".else")
		return n, err
	case "diff":
		a, err := d.object(args, apath, what, "from", "to", "fields")
		if err != nil {
			return nil, err
		}
		n := &diffNode{}
		if n.from, err = d.node(a.value("from"), apath+".from"); err != nil {
			return nil, err
		}
		if n.to, err = d.node(a.value("to"), apath+".to"); err != nil {
			return nil, err
		}
		n.fields, err = d.strings(a.value("fields"), apath+".fields")
		return n, err
	case "initializeRecord":
		return d.initializeRecordNode(args, apath, what)
	case "mapRecord":
		return d.mapRecordNode(args, apath, what)
	case "process":
		a, err := d.object(args, apath, what, "expr", "operations")
		if err != nil {
			return nil, err
		}
		n := &processNode{}
		if n.expr, err = d.node(a.value("expr"), apath+".expr"); err != nil {
			return nil, err
		}
		n.ops, err = d.inMemoryOps(a.value("operations"), apath+".operations")
		return n, err
	case "query", "execute":
		q, err := d.dbQuery(args, apath, what)
		if err != nil {
			return nil, err
		}
		if kind == "query" {
			return &queryNode{q}, nil
		}
		return &executeNode{q}, nil
	}
	return nil, &unsupportedError{what: fmt.Sprintf("query plan node %q", kind), path: path}
}

func (d *planDecoder) letNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "bindings", "expr")
	if err != nil {
		return nil, err
	}
	list, ok := a.value("bindings").([]any)
	if !ok {
		return nil, d.malformed(path+".bindings", "expected an array")
	}
	n := &letNode{bindings: make([]letBinding, len(list))}
	for i, b := range list {
		bpath := path + ".bindings[" + strconv.Itoa(i) + "]"
		br, err := d.object(b, bpath, "a let binding", "name", "expr")
		if err != nil {
			return nil, err
		}
		if n.bindings[i].name, err = d.str(br, "name", bpath); err != nil {
			return nil, err
		}
		if n.bindings[i].expr, err = d.node(br.value("expr"), bpath+".expr"); err != nil {
			return nil, err
		}
	}
	n.expr, err = d.node(a.value("expr"), path+".expr")
	return n, err
}

func (d *planDecoder) joinNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "parent", "children", "canAssumeStrictEquality")
	if err != nil {
		return nil, err
	}
	n := &joinNode{}
	if n.parent, err = d.node(a.value("parent"), path+".parent"); err != nil {
		return nil, err
	}
	if n.canAssumeStrictEquality, err = d.boolean(a, "canAssumeStrictEquality", path, false); err != nil {
		return nil, err
	}
	list, ok := a.value("children").([]any)
	if !ok {
		return nil, d.malformed(path+".children", "expected an array")
	}
	for i, c := range list {
		cpath := path + ".children[" + strconv.Itoa(i) + "]"
		cr, err := d.object(c, cpath, "a join child", "child", "on", "parentField", "isRelationUnique")
		if err != nil {
			return nil, err
		}
		var jc joinChild
		if jc.child, err = d.node(cr.value("child"), cpath+".child"); err != nil {
			return nil, err
		}
		if jc.parentField, err = d.str(cr, "parentField", cpath); err != nil {
			return nil, err
		}
		if jc.isRelationUnique, err = d.boolean(cr, "isRelationUnique", cpath, true); err != nil {
			return nil, err
		}
		pairs, ok := cr.value("on").([]any)
		if !ok {
			return nil, d.malformed(cpath+".on", "expected an array of [parent, child] pairs")
		}
		for j, p := range pairs {
			pair, err := d.strings(p, cpath+".on["+strconv.Itoa(j)+"]")
			if err != nil || len(pair) != 2 {
				return nil, d.malformed(cpath+".on["+strconv.Itoa(j)+"]", "expected a [parent, child] pair")
			}
			jc.on = append(jc.on, [2]string{pair[0], pair[1]})
		}
		n.children = append(n.children, jc)
	}
	return n, nil
}

func (d *planDecoder) dataMapNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "expr", "structure", "enums")
	if err != nil {
		return nil, err
	}
	n := &dataMapNode{enums: map[string]map[string]string{}}
	if n.expr, err = d.node(a.value("expr"), path+".expr"); err != nil {
		return nil, err
	}
	if n.structure, err = d.resultNode(a.value("structure"), path+".structure"); err != nil {
		return nil, err
	}
	if enums, ok := a.get("enums"); ok && enums != nil {
		er, ok := enums.(*record)
		if !ok {
			return nil, d.malformed(path+".enums", "expected an object")
		}
		for _, e := range er.fields {
			vr, ok := e.value.(*record)
			if !ok {
				return nil, d.malformed(path+".enums."+e.name, "expected an object")
			}
			m := make(map[string]string, len(vr.fields))
			for _, v := range vr.fields {
				s, ok := v.value.(string)
				if !ok {
					return nil, d.malformed(path+".enums."+e.name+"."+v.name, "expected a string")
				}
				m[v.name] = s
			}
			n.enums[e.name] = m
		}
	}
	return n, nil
}

func (d *planDecoder) resultNode(v any, path string) (*resultNode, error) {
	r, ok := v.(*record)
	if !ok {
		return nil, d.malformed(path, "expected an object")
	}
	typ, err := d.str(r, "type", path)
	if err != nil {
		return nil, err
	}
	n := &resultNode{typ: typ}
	what := fmt.Sprintf("a %q result node", typ)
	switch typ {
	case "affectedRows":
		_, err := d.object(r, path, what, "type")
		return n, err
	case "object":
		if _, err := d.object(r, path, what, "type", "fields", "serializedName", "skipNulls"); err != nil {
			return nil, err
		}
		fr, ok := r.value("fields").(*record)
		if !ok {
			return nil, d.malformed(path+".fields", "expected an object")
		}
		for _, f := range fr.fields {
			child, err := d.resultNode(f.value, path+".fields."+f.name)
			if err != nil {
				return nil, err
			}
			n.fields = append(n.fields, namedResult{f.name, child})
		}
		if sn, ok := r.get("serializedName"); ok && sn != nil {
			s, ok := sn.(string)
			if !ok {
				return nil, d.malformed(path+".serializedName", "expected a string or null")
			}
			n.serializedName = &s
		}
		if n.skipNulls, err = d.boolean(r, "skipNulls", path, false); err != nil {
			return nil, err
		}
		return n, nil
	case "field":
		if _, err := d.object(r, path, what, "type", "dbName", "fieldType"); err != nil {
			return nil, err
		}
		if n.dbName, err = d.str(r, "dbName", path); err != nil {
			return nil, err
		}
		n.fieldType, err = d.fieldType(r.value("fieldType"), path+".fieldType")
		return n, err
	}
	return nil, &unsupportedError{what: fmt.Sprintf("result node type %q", typ), path: path}
}

func (d *planDecoder) fieldType(v any, path string) (fieldType, error) {
	r, ok := v.(*record)
	if !ok {
		return fieldType{}, d.malformed(path, "expected an object")
	}
	var ft fieldType
	var err error
	if ft.typ, err = d.str(r, "type", path); err != nil {
		return ft, err
	}
	if ft.arity, err = d.str(r, "arity", path); err != nil {
		return ft, err
	}
	switch ft.arity {
	case "required", "optional", "list":
	default:
		return ft, &unsupportedError{what: fmt.Sprintf("field arity %q", ft.arity), path: path}
	}
	what := fmt.Sprintf("a %q field type", ft.typ)
	switch ft.typ {
	case "string", "int", "bigint", "float", "boolean", "json", "object", "datetime", "decimal", "unsupported":
		_, err = d.object(r, path, what, "type", "arity")
	case "enum":
		if _, err = d.object(r, path, what, "type", "arity", "name"); err == nil {
			ft.enumName, err = d.str(r, "name", path)
		}
	case "bytes":
		if _, err = d.object(r, path, what, "type", "arity", "encoding"); err == nil {
			ft.encoding, err = d.str(r, "encoding", path)
			switch ft.encoding {
			case "array", "base64", "hex":
			default:
				if err == nil {
					err = &unsupportedError{what: fmt.Sprintf("bytes encoding %q", ft.encoding), path: path}
				}
			}
		}
	default:
		err = &unsupportedError{what: fmt.Sprintf("result field type %q", ft.typ), path: path}
	}
	return ft, err
}

func (d *planDecoder) validateNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "expr", "rules", "errorIdentifier", "context")
	if err != nil {
		return nil, err
	}
	n := &validateNode{}
	if n.expr, err = d.node(a.value("expr"), path+".expr"); err != nil {
		return nil, err
	}
	list, ok := a.value("rules").([]any)
	if !ok {
		return nil, d.malformed(path+".rules", "expected an array")
	}
	for i, r := range list {
		rule, err := d.rule(r, path+".rules["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		n.rules = append(n.rules, rule)
	}
	if n.errorIdentifier, err = d.str(a, "errorIdentifier", path); err != nil {
		return nil, err
	}
	switch n.errorIdentifier {
	case "RELATION_VIOLATION", "MISSING_RELATED_RECORD", "MISSING_RECORD", "INCOMPLETE_CONNECT_INPUT",
		"INCOMPLETE_CONNECT_OUTPUT", "RECORDS_NOT_CONNECTED":
	default:
		return nil, &unsupportedError{what: fmt.Sprintf("validation error identifier %q", n.errorIdentifier), path: path}
	}
	n.context, _ = a.value("context").(*record)
	if n.context == nil {
		n.context = newRecord(0)
	}
	return n, nil
}

func (d *planDecoder) rule(v any, path string) (dataRule, error) {
	r, ok := v.(*record)
	if !ok {
		return dataRule{}, d.malformed(path, "expected a rule object")
	}
	typ, err := d.str(r, "type", path)
	if err != nil {
		return dataRule{}, err
	}
	switch typ {
	case "never":
		_, err := d.object(r, path, "a \"never\" rule", "type")
		return dataRule{typ: typ}, err
	case "rowCountEq", "rowCountNeq", "affectedRowCountEq":
		if _, err := d.object(r, path, fmt.Sprintf("a %q rule", typ), "type", "args"); err != nil {
			return dataRule{}, err
		}
		n, ok := r.value("args").(float64)
		if !ok {
			return dataRule{}, d.malformed(path+".args", "expected a number")
		}
		return dataRule{typ: typ, arg: n}, nil
	}
	return dataRule{}, &unsupportedError{what: fmt.Sprintf("data rule %q", typ), path: path}
}

func (d *planDecoder) initializeRecordNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "expr", "fields")
	if err != nil {
		return nil, err
	}
	n := &initializeRecordNode{}
	if n.expr, err = d.node(a.value("expr"), path+".expr"); err != nil {
		return nil, err
	}
	fr, ok := a.value("fields").(*record)
	if !ok {
		return nil, d.malformed(path+".fields", "expected an object")
	}
	for _, f := range fr.fields {
		fpath := path + ".fields." + f.name
		ir, ok := f.value.(*record)
		if !ok {
			return nil, d.malformed(fpath, "expected an object")
		}
		typ, err := d.str(ir, "type", fpath)
		if err != nil {
			return nil, err
		}
		init := fieldInitializer{name: f.name}
		switch typ {
		case "lastInsertId":
			_, err = d.object(ir, fpath, "a lastInsertId initializer", "type")
			init.lastInsertID = true
		case "value":
			if _, err = d.object(ir, fpath, "a value initializer", "type", "value"); err == nil {
				init.value, err = d.prismaValue(ir.value("value"), fpath+".value")
			}
		default:
			err = &unsupportedError{what: fmt.Sprintf("field initializer %q", typ), path: fpath}
		}
		if err != nil {
			return nil, err
		}
		n.fields = append(n.fields, init)
	}
	return n, nil
}

func (d *planDecoder) mapRecordNode(args any, path, what string) (node, error) {
	a, err := d.object(args, path, what, "expr", "fields")
	if err != nil {
		return nil, err
	}
	n := &mapRecordNode{}
	if n.expr, err = d.node(a.value("expr"), path+".expr"); err != nil {
		return nil, err
	}
	fr, ok := a.value("fields").(*record)
	if !ok {
		return nil, d.malformed(path+".fields", "expected an object")
	}
	for _, f := range fr.fields {
		fpath := path + ".fields." + f.name
		or, err := d.object(f.value, fpath, "a field operation", "type", "value")
		if err != nil {
			return nil, err
		}
		op, err := d.str(or, "type", fpath)
		if err != nil {
			return nil, err
		}
		switch op {
		case "set", "add", "subtract", "multiply", "divide":
		default:
			return nil, &unsupportedError{what: fmt.Sprintf("field operation %q", op), path: fpath}
		}
		val, err := d.prismaValue(or.value("value"), fpath+".value")
		if err != nil {
			return nil, err
		}
		n.fields = append(n.fields, fieldOperation{name: f.name, op: op, value: val})
	}
	return n, nil
}

func (d *planDecoder) inMemoryOps(v any, path string) (*inMemoryOps, error) {
	r, err := d.object(v, path, "in-memory operations", "pagination", "distinct", "reverse", "linkingFields", "nested")
	if err != nil {
		return nil, err
	}
	ops := &inMemoryOps{}
	if p, ok := r.get("pagination"); ok && p != nil {
		pr, err := d.object(p, path+".pagination", "pagination", "cursor", "take", "skip")
		if err != nil {
			return nil, err
		}
		ops.pagination = &pagination{}
		if c, ok := pr.get("cursor"); ok && c != nil {
			cr, ok := c.(*record)
			if !ok {
				return nil, d.malformed(path+".pagination.cursor", "expected an object")
			}
			cursor := newRecord(len(cr.fields))
			for _, f := range cr.fields {
				val, err := d.prismaValue(f.value, path+".pagination.cursor."+f.name)
				if err != nil {
					return nil, err
				}
				cursor.set(f.name, val)
			}
			ops.pagination.cursor = cursor
		}
		for _, k := range []string{"take", "skip"} {
			x, ok := pr.get(k)
			if !ok || x == nil {
				continue
			}
			n, ok := x.(float64)
			if !ok {
				return nil, d.malformed(path+".pagination."+k, "expected a number or null")
			}
			if k == "take" {
				ops.pagination.take = &n
			} else {
				ops.pagination.skip = &n
			}
		}
	}
	if x, ok := r.get("distinct"); ok && x != nil {
		if ops.distinct, err = d.strings(x, path+".distinct"); err != nil {
			return nil, err
		}
		ops.hasDistinct = true
	}
	if x, ok := r.get("linkingFields"); ok && x != nil {
		if ops.linkingFields, err = d.strings(x, path+".linkingFields"); err != nil {
			return nil, err
		}
		ops.hasLinking = true
	}
	if ops.reverse, err = d.boolean(r, "reverse", path, false); err != nil {
		return nil, err
	}
	if x, ok := r.get("nested"); ok && x != nil {
		nr, ok := x.(*record)
		if !ok {
			return nil, d.malformed(path+".nested", "expected an object")
		}
		for _, f := range nr.fields {
			child, err := d.inMemoryOps(f.value, path+".nested."+f.name)
			if err != nil {
				return nil, err
			}
			ops.nested = append(ops.nested, nestedOps{f.name, child})
		}
	}
	return ops, nil
}

func (d *planDecoder) dbQuery(v any, path, what string) (*dbQuery, error) {
	r, ok := v.(*record)
	if !ok {
		return nil, d.malformed(path, "expected a query object")
	}
	typ, err := d.str(r, "type", path)
	if err != nil {
		return nil, err
	}
	q := &dbQuery{}
	switch typ {
	case "rawSql":
		if _, err := d.object(r, path, "a rawSql query", "type", "sql", "args", "argTypes"); err != nil {
			return nil, err
		}
		q.raw = true
		if q.sql, err = d.str(r, "sql", path); err != nil {
			return nil, err
		}
	case "templateSql":
		if _, err := d.object(r, path, "a templateSql query", "type", "fragments", "args", "argTypes", "placeholderFormat", "chunkable"); err != nil {
			return nil, err
		}
		if err := d.fragments(q, r, path); err != nil {
			return nil, err
		}
		pf, err := d.object(r.value("placeholderFormat"), path+".placeholderFormat", "a placeholder format", "prefix", "hasNumbering")
		if err != nil {
			return nil, err
		}
		if q.prefix, err = d.str(pf, "prefix", path+".placeholderFormat"); err != nil {
			return nil, err
		}
		if q.numbered, err = d.boolean(pf, "hasNumbering", path+".placeholderFormat", true); err != nil {
			return nil, err
		}
		if q.chunkable, err = d.boolean(r, "chunkable", path, false); err != nil {
			return nil, err
		}
	default:
		return nil, &unsupportedError{what: fmt.Sprintf("query type %q in %s", typ, what), path: path}
	}
	args, ok := r.value("args").([]any)
	if !ok {
		return nil, d.malformed(path+".args", "expected an array")
	}
	q.args = make([]any, len(args))
	for i, a := range args {
		if q.args[i], err = d.prismaValue(a, path+".args["+strconv.Itoa(i)+"]"); err != nil {
			return nil, err
		}
	}
	types, ok := r.value("argTypes").([]any)
	if !ok {
		return nil, d.malformed(path+".argTypes", "expected an array")
	}
	q.argTypes = make([]argType, len(types))
	for i, t := range types {
		if q.argTypes[i], err = d.argType(t, path+".argTypes["+strconv.Itoa(i)+"]"); err != nil {
			return nil, err
		}
	}
	q.prerender()
	return q, nil
}

func (d *planDecoder) fragments(q *dbQuery, r *record, path string) error {
	list, ok := r.value("fragments").([]any)
	if !ok {
		return d.malformed(path+".fragments", "expected an array")
	}
	q.fragments = make([]fragment, len(list))
	for i, f := range list {
		fpath := path + ".fragments[" + strconv.Itoa(i) + "]"
		fr, ok := f.(*record)
		if !ok {
			return d.malformed(fpath, "expected an object")
		}
		typ, err := d.str(fr, "type", fpath)
		if err != nil {
			return err
		}
		frag := fragment{typ: typ}
		what := fmt.Sprintf("a %q fragment", typ)
		switch typ {
		case "stringChunk":
			if _, err = d.object(fr, fpath, what, "type", "chunk"); err == nil {
				frag.chunk, err = d.str(fr, "chunk", fpath)
			}
		case "parameter":
			_, err = d.object(fr, fpath, what, "type")
		case "parameterTuple", "parameterTupleList":
			allowed := []string{"type", "itemPrefix", "itemSeparator", "itemSuffix"}
			if typ == "parameterTupleList" {
				allowed = append(allowed, "groupSeparator")
			}
			if _, err = d.object(fr, fpath, what, allowed...); err != nil {
				return err
			}
			if frag.itemPrefix, err = d.optStr(fr, "itemPrefix", fpath); err != nil {
				return err
			}
			if frag.itemSeparator, err = d.optStr(fr, "itemSeparator", fpath); err != nil {
				return err
			}
			if frag.itemSuffix, err = d.optStr(fr, "itemSuffix", fpath); err != nil {
				return err
			}
			frag.groupSeparator, err = d.optStr(fr, "groupSeparator", fpath)
		default:
			err = &unsupportedError{what: fmt.Sprintf("SQL fragment type %q", typ), path: fpath}
		}
		if err != nil {
			return err
		}
		q.fragments[i] = frag
	}
	return nil
}

func (d *planDecoder) argType(v any, path string) (argType, error) {
	r, ok := v.(*record)
	if !ok {
		return argType{}, d.malformed(path, "expected an object")
	}
	arity, err := d.str(r, "arity", path)
	if err != nil {
		return argType{}, err
	}
	t := argType{arity: arity}
	switch arity {
	case "tuple":
		if _, err := d.object(r, path, "a tuple argument type", "arity", "elements"); err != nil {
			return t, err
		}
		list, ok := r.value("elements").([]any)
		if !ok {
			return t, d.malformed(path+".elements", "expected an array")
		}
		for i, e := range list {
			et, err := d.argType(e, path+".elements["+strconv.Itoa(i)+"]")
			if err != nil {
				return t, err
			}
			t.elements = append(t.elements, et)
		}
		return t, nil
	case "scalar", "list":
	default:
		return t, &unsupportedError{what: fmt.Sprintf("argument arity %q", arity), path: path}
	}
	if _, err := d.object(r, path, "an argument type", "arity", "scalarType", "dbType"); err != nil {
		return t, err
	}
	if t.scalarType, err = d.str(r, "scalarType", path); err != nil {
		return t, err
	}
	switch t.scalarType {
	case "string", "int", "bigint", "float", "decimal", "boolean", "enum", "uuid", "json", "datetime", "bytes", "unknown":
	default:
		return t, &unsupportedError{what: fmt.Sprintf("argument scalar type %q", t.scalarType), path: path}
	}
	t.dbType, err = d.optStr(r, "dbType", path)
	return t, err
}

// generators lists the generator names the interpreter implements, with their arities.
var knownGenerators = map[string]bool{"now": true, "uuid": true, "cuid": true, "ulid": true, "nanoid": true, "product": true}

// prismaValue converts the placeholders and generator calls of a PrismaValue into their
// typed forms. As in the reference, they are recognised at the top level and inside arrays;
// objects are plain data.
func (d *planDecoder) prismaValue(v any, path string) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = d.prismaValue(e, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return nil, err
			}
		}
		return out, nil
	case *record:
		tag, _ := x.value("prisma__type").(string)
		switch tag {
		case "param":
			pr, err := d.object(x.value("prisma__value"), path+".prisma__value", "a param placeholder", "name", "type")
			if err != nil {
				return nil, err
			}
			name, err := d.str(pr, "name", path+".prisma__value")
			if err != nil {
				return nil, err
			}
			typ, err := d.optStr(pr, "type", path+".prisma__value")
			return &paramRef{name: name, typ: typ}, err
		case "generatorCall":
			gr, err := d.object(x.value("prisma__value"), path+".prisma__value", "a generator call", "name", "args", "returnType")
			if err != nil {
				return nil, err
			}
			name, err := d.str(gr, "name", path+".prisma__value")
			if err != nil {
				return nil, err
			}
			if !knownGenerators[name] {
				return nil, &unsupportedError{what: fmt.Sprintf("generator %q", name), path: path}
			}
			list, ok := gr.value("args").([]any)
			if !ok {
				return nil, d.malformed(path+".prisma__value.args", "expected an array")
			}
			g := &generatorCall{name: name, args: make([]any, len(list))}
			for i, a := range list {
				if g.args[i], err = d.prismaValue(a, path+".prisma__value.args["+strconv.Itoa(i)+"]"); err != nil {
					return nil, err
				}
			}
			return g, nil
		}
	}
	return v, nil
}
