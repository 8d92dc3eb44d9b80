package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// maxParams is the extended protocol's limit on bind parameters.
const maxParams = 65535

// paramsToText turns JSON request parameters into Postgres text-format values (nil = NULL):
// null is NULL, a string is sent as is, a bool or number as its JSON text, an object as JSON
// text, and an array as a Postgres array literal. Postgres then casts the text to the type it
// infers for each placeholder.
func paramsToText(params []json.RawMessage) ([][]byte, error) {
	if len(params) > maxParams {
		return nil, fmt.Errorf("too many parameters: %d (max %d)", len(params), maxParams)
	}
	out := make([][]byte, len(params))
	for i, p := range params {
		v, err := paramToText(p)
		if err != nil {
			return nil, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

func paramToText(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty value")
	}
	switch raw[0] {
	case 'n':
		return nil, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, err
		}
		return appendArrayLiteral(nil, elems, 0)
	case '{':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	default: // true, false, numbers: their JSON text is valid Postgres input
		return append([]byte(nil), raw...), nil
	}
}

// maxArrayDepth stays below Postgres's MAXDIM (6).
const maxArrayDepth = 6

// appendArrayLiteral writes a Postgres array literal such as {1,"a b",NULL,{2,3}}. Every
// non-NULL scalar is double-quoted, so no element needs Postgres's unquoted-word rules.
func appendArrayLiteral(dst []byte, elems []json.RawMessage, depth int) ([]byte, error) {
	if depth >= maxArrayDepth {
		return nil, fmt.Errorf("array nested deeper than %d levels", maxArrayDepth)
	}
	dst = append(dst, '{')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		e = bytes.TrimSpace(e)
		if len(e) == 0 {
			return nil, fmt.Errorf("empty array element")
		}
		switch e[0] {
		case 'n':
			dst = append(dst, "NULL"...)
		case '[':
			var inner []json.RawMessage
			if err := json.Unmarshal(e, &inner); err != nil {
				return nil, err
			}
			var err error
			if dst, err = appendArrayLiteral(dst, inner, depth+1); err != nil {
				return nil, err
			}
		default:
			text, err := paramToText(e)
			if err != nil {
				return nil, err
			}
			dst = appendQuotedElement(dst, text)
		}
	}
	return append(dst, '}'), nil
}

func appendQuotedElement(dst, text []byte) []byte {
	dst = append(dst, '"')
	for _, c := range text {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
