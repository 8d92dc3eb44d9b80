package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Request headers of the Neon HTTP SQL format.
const (
	headerConnectionString = "Neon-Connection-String"
	headerRawTextOutput    = "Neon-Raw-Text-Output"
	headerArrayMode        = "Neon-Array-Mode"
	headerIsolationLevel   = "Neon-Batch-Isolation-Level"
	headerReadOnly         = "Neon-Batch-Read-Only"
	headerDeferrable       = "Neon-Batch-Deferrable"
	headerRequestID        = "X-Request-Id"
	headerCacheStatus      = "Edgepool-Cache"
)

type query struct {
	sql    string
	params [][]byte
	// paramsJSON keeps the request's parameters for the cache key.
	paramsJSON []json.RawMessage
}

// requestError is a client mistake answered with 400 and a message.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...)}
}

// flag reports whether a Neon boolean header is set; only the exact value "true" counts.
func flag(h http.Header, name string) bool { return h.Get(name) == "true" }

var isolationLevels = map[string]string{
	"ReadUncommitted": "READ UNCOMMITTED",
	"ReadCommitted":   "READ COMMITTED",
	"RepeatableRead":  "REPEATABLE READ",
	"Serializable":    "SERIALIZABLE",
}

// parseCredentials reads who is asking: the password of Neon-Connection-String, or a bearer
// token (which wins when both are present, as in Neon's JWT mode).
func parseCredentials(h http.Header) (user, key, database string, err error) {
	if cs := h.Get(headerConnectionString); cs != "" {
		u, perr := url.Parse(cs)
		if perr != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			// Never echo the connection string: it carries the key.
			return "", "", "", badRequest("invalid %s header: expected postgres://user:key@host/database", headerConnectionString)
		}
		if u.User != nil {
			user = u.User.Username()
			key, _ = u.User.Password()
		}
		database = strings.TrimPrefix(u.Path, "/")
	}
	if auth := h.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", "", "", badRequest("invalid Authorization header: expected \"Bearer <key>\"")
		}
		key = strings.TrimSpace(token)
	}
	return user, key, database, nil
}

// parseBody decodes {"query", "params"} or {"queries": [...]}.
func parseBody(body []byte) (queries []query, batch bool, err error) {
	var doc struct {
		Query   *string           `json:"query"`
		Params  []json.RawMessage `json:"params"`
		Queries *[]struct {
			Query  *string           `json:"query"`
			Params []json.RawMessage `json:"params"`
		} `json:"queries"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, false, badRequest("request body is not valid JSON: %s", jsonErrorText(err))
	}
	if dec.More() {
		return nil, false, badRequest("request body has data after the JSON object")
	}
	switch {
	case doc.Query != nil && doc.Queries != nil:
		return nil, false, badRequest("request body must have either \"query\" or \"queries\", not both")
	case doc.Query != nil:
		q, err := newQuery(*doc.Query, doc.Params)
		if err != nil {
			return nil, false, err
		}
		return []query{q}, false, nil
	case doc.Queries != nil:
		if len(*doc.Queries) == 0 {
			return nil, true, badRequest("\"queries\" must not be empty")
		}
		for i, item := range *doc.Queries {
			if item.Query == nil {
				return nil, true, badRequest("queries[%d]: \"query\" is required", i)
			}
			q, err := newQuery(*item.Query, item.Params)
			if err != nil {
				return nil, true, badRequest("queries[%d]: %s", i, err.Error())
			}
			queries = append(queries, q)
		}
		return queries, true, nil
	default:
		return nil, false, badRequest("request body must be a JSON object with \"query\" or \"queries\"")
	}
}

func newQuery(sql string, params []json.RawMessage) (query, error) {
	text, err := paramsToText(params)
	if err != nil {
		return query{}, badRequest("%s", err.Error())
	}
	return query{sql: sql, params: text, paramsJSON: params}, nil
}

// beginStatement builds a batch's BEGIN from the isolation-level, read-only and deferrable
// headers.
func beginStatement(h http.Header) (string, error) {
	stmt := "BEGIN"
	if lvl := h.Get(headerIsolationLevel); lvl != "" {
		sqlLevel, ok := isolationLevels[lvl]
		if !ok {
			return "", badRequest("invalid %s %q: expected ReadUncommitted, ReadCommitted, RepeatableRead or Serializable", headerIsolationLevel, lvl)
		}
		stmt += " ISOLATION LEVEL " + sqlLevel
	}
	if flag(h, headerReadOnly) {
		stmt += " READ ONLY"
	}
	if flag(h, headerDeferrable) {
		stmt += " DEFERRABLE"
	}
	return stmt, nil
}

func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, got %s", te.Field, te.Type.String(), te.Value)
	default:
		return err.Error()
	}
}
