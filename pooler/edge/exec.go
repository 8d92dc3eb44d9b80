package edge

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// errResponseTooLarge means the JSON response grew past the configured cap (answered with 507).
var errResponseTooLarge = errors.New("response too large")

// outputMode is how results are written.
type outputMode struct {
	rawText   bool // every value a JSON string or null
	arrayMode bool // rows as arrays instead of objects keyed by column name
}

// runQuery executes one query with the extended protocol (one statement, text results) and
// appends its JSON result to dst. It fails with errResponseTooLarge as soon as the result
// cannot fit in limit bytes, without reading the rest (the connection is closed).
func runQuery(ctx context.Context, pc *pgconn.PgConn, q query, mode outputMode, dst []byte, limit int) ([]byte, error) {
	rr := pc.ExecParams(ctx, q.sql, q.params, nil, nil, nil)
	fields := rr.FieldDescriptions()
	kinds := make([]valueKind, len(fields))
	elems := make([]valueKind, len(fields))
	if !mode.rawText {
		for i, f := range fields {
			kinds[i], elems[i] = columnKind(f.DataTypeOID)
		}
	}
	dst = append(dst, `{"fields":[`...)
	for i, f := range fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, []byte(f.Name))
		dst = append(dst, `,"dataTypeID":`...)
		dst = strconv.AppendUint(dst, uint64(f.DataTypeOID), 10)
		dst = append(dst, `,"tableID":`...)
		dst = strconv.AppendUint(dst, uint64(f.TableOID), 10)
		dst = append(dst, `,"columnID":`...)
		dst = strconv.AppendUint(dst, uint64(f.TableAttributeNumber), 10)
		dst = append(dst, `,"dataTypeSize":`...)
		dst = strconv.AppendInt(dst, int64(f.DataTypeSize), 10)
		dst = append(dst, `,"dataTypeModifier":`...)
		dst = strconv.AppendInt(dst, int64(f.TypeModifier), 10)
		dst = append(dst, `,"format":"text"}`...)
	}
	dst = append(dst, `],"rows":[`...)
	for nrow := 0; rr.NextRow(); nrow++ {
		values := rr.Values()
		// A row's JSON is never shorter than its text values: stop before building one that
		// cannot fit. Rows longer than the whole cap never get here (maxRowBytes).
		if len(dst)+rawLen(values) > limit {
			// Stop reading instead of draining what may be millions of rows: cut the
			// connection (the pool drops it; PostgreSQL stops at its next write).
			_ = pc.Conn().Close()
			_, _ = rr.Close()
			return dst, errResponseTooLarge
		}
		if nrow > 0 {
			dst = append(dst, ',')
		}
		dst = appendRow(dst, fields, values, kinds, elems, mode)
		if len(dst) > limit {
			_ = pc.Conn().Close()
			_, _ = rr.Close()
			return dst, errResponseTooLarge
		}
	}
	tag, err := rr.Close()
	if err != nil {
		if errors.As(err, new(*pgproto3.ExceededMaxBodyLenErr)) {
			return dst, errResponseTooLarge
		}
		return dst, err
	}
	command, rowCount := splitCommandTag(tag.String())
	dst = append(dst, `],"command":`...)
	dst = appendJSONString(dst, []byte(command))
	dst = append(dst, `,"rowCount":`...)
	if rowCount >= 0 {
		dst = strconv.AppendInt(dst, rowCount, 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"rowAsArray":`...)
	dst = strconv.AppendBool(dst, mode.arrayMode)
	return append(dst, '}'), nil
}

// rawLen is the total length of a row's text values.
func rawLen(values [][]byte) int {
	n := 0
	for _, v := range values {
		n += len(v)
	}
	return n
}

// pgMaxMessage is pgproto3's default cap on a message from the server (PostgreSQL's own 1 GB
// limit), restored after a request.
const pgMaxMessage = 0x3fffffff - 1

// limitMessages makes the connection refuse, before reading it, any message from the server
// longer than limit bytes (a DataRow bigger than the whole response cap), so memory stays
// bounded by the cap instead of by the largest row. The returned func restores the default.
func limitMessages(pc *pgconn.PgConn, limit int) (restore func()) {
	pc.Frontend().SetMaxBodyLen(limit)
	return func() { pc.Frontend().SetMaxBodyLen(pgMaxMessage) }
}

func appendRow(dst []byte, fields []pgconn.FieldDescription, values [][]byte, kinds, elems []valueKind, mode outputMode) []byte {
	opening, closing := byte('{'), byte('}')
	if mode.arrayMode {
		opening, closing = '[', ']'
	}
	dst = append(dst, opening)
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		if !mode.arrayMode {
			dst = appendJSONString(dst, []byte(fields[i].Name))
			dst = append(dst, ':')
		}
		switch {
		case v == nil:
			dst = append(dst, "null"...)
		case mode.rawText:
			dst = appendJSONString(dst, v)
		default:
			dst = appendValue(dst, v, kinds[i], elems[i])
		}
	}
	return append(dst, closing)
}

// splitCommandTag returns the command word of a tag ("INSERT 0 3" → "INSERT") and its row
// count, or -1 when the tag carries none ("CREATE TABLE").
func splitCommandTag(tag string) (command string, rowCount int64) {
	words := strings.Fields(tag)
	if len(words) == 0 {
		return "", -1
	}
	if len(words) > 1 {
		if n, err := strconv.ParseInt(words[len(words)-1], 10, 64); err == nil {
			return words[0], n
		}
	}
	return words[0], -1
}

// runBatch runs queries in one transaction opened by begin and appends {"results": [...]}.
// Any error rolls the transaction back.
func runBatch(ctx context.Context, pc *pgconn.PgConn, begin string, queries []query, mode outputMode, dst []byte, limit int) ([]byte, error) {
	if _, err := pc.Exec(ctx, begin).ReadAll(); err != nil {
		return dst, err
	}
	dst = append(dst, `{"results":[`...)
	for i, q := range queries {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = runQuery(ctx, pc, q, mode, dst, limit); err != nil {
			rollback(ctx, pc)
			return dst, err
		}
	}
	if _, err := pc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		rollback(ctx, pc)
		return dst, err
	}
	return append(dst, "]}"...), nil
}

// rollback ends whatever transaction the connection is in, so the pool gets back an idle
// connection. It runs even when ctx is done (bounded by its own timeout); a connection that
// cannot be rolled back is closed, and the pool drops closed connections.
func rollback(ctx context.Context, pc *pgconn.PgConn) {
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := pc.Exec(cctx, "ROLLBACK").ReadAll(); err != nil || pc.TxStatus() != 'I' {
		_ = pc.Close(cctx)
	}
}

// runReadOnly runs one query inside a READ ONLY transaction, which is how the cache knows a
// statement does not write: Postgres refuses writes there with SQLSTATE 25006.
func runReadOnly(ctx context.Context, pc *pgconn.PgConn, q query, mode outputMode, dst []byte, limit int) ([]byte, error) {
	if _, err := pc.Exec(ctx, "BEGIN READ ONLY").ReadAll(); err != nil {
		return dst, err
	}
	dst, err := runQuery(ctx, pc, q, mode, dst, limit)
	if err != nil {
		rollback(ctx, pc)
		return dst, err
	}
	if _, err := pc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		rollback(ctx, pc)
		return dst, err
	}
	return dst, nil
}
