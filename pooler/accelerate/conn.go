package accelerate

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// resultSet is a statement's rows, read with the adapter's value conventions.
type resultSet struct {
	columns  []string
	types    []string // raw query type names
	rows     [][]any
	affected int64
	decoders []columnDecoder
}

// dbConn runs statements on one upstream connection for one request.
type dbConn struct {
	pc *pgconn.PgConn
	// readBudget is how many more bytes of row data this request may read before it fails
	// with a response-size error (it bounds the memory a request can take).
	readBudget *int64
}

var errResponseTooLarge = resourceLimit("P6009", "Response size limit exceeded")

// run executes a statement without parameters (transaction control).
func (c *dbConn) run(ctx context.Context, sql string) (*resultSet, error) {
	return c.runStatement(ctx, sql, pgParams{}, true)
}

// runStatement executes one statement and reads its rows; with readRows false they are not
// read, whatever their types (an execute node only wants the affected-row count). A
// statement without parameters goes through the simple protocol, as node-postgres sends it,
// so it may hold several commands; the last one's result is kept.
func (c *dbConn) runStatement(ctx context.Context, sql string, params pgParams, readRows bool) (*resultSet, error) {
	if len(params.values) == 0 {
		results, err := c.pc.Exec(ctx, sql).ReadAll()
		if err != nil {
			return nil, err
		}
		if len(results) == 0 {
			return &resultSet{}, nil
		}
		last := results[len(results)-1]
		if last.Err != nil {
			return nil, last.Err
		}
		if !readRows {
			return &resultSet{affected: last.CommandTag.RowsAffected()}, nil
		}
		rs, err := c.readFields(last.FieldDescriptions)
		if err != nil {
			return nil, err
		}
		for _, row := range last.Rows {
			if err := c.addRow(rs, last.FieldDescriptions, row); err != nil {
				return nil, err
			}
		}
		rs.affected = last.CommandTag.RowsAffected()
		return rs, nil
	}
	rr := c.pc.ExecParams(ctx, sql, params.values, nil, params.formats, nil)
	fields := rr.FieldDescriptions()
	rs, decodeErr := &resultSet{}, error(nil)
	if readRows {
		rs, decodeErr = c.readFields(fields)
	}
	for rr.NextRow() {
		if readRows && decodeErr == nil {
			decodeErr = c.addRow(rs, fields, rr.Values())
		}
	}
	tag, err := rr.Close()
	if err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	rs.affected = tag.RowsAffected()
	return rs, nil
}

// readFields prepares a result set for the columns; a column type the adapter does not
// support fails the statement (after its rows are drained).
func (c *dbConn) readFields(fields []pgconn.FieldDescription) (*resultSet, error) {
	rs := &resultSet{columns: make([]string, len(fields)), types: make([]string, len(fields)),
		decoders: make([]columnDecoder, len(fields))}
	for i, f := range fields {
		rs.columns[i] = f.Name
		d, err := decoderFor(f.DataTypeOID)
		if err != nil {
			return rs, err
		}
		rs.types[i], rs.decoders[i] = d.typeName, d
	}
	return rs, nil
}

func (c *dbConn) addRow(rs *resultSet, fields []pgconn.FieldDescription, values [][]byte) error {
	row := make([]any, len(values))
	for i, v := range values {
		if v == nil {
			continue
		}
		if c.readBudget != nil {
			if *c.readBudget -= int64(len(v)); *c.readBudget < 0 {
				return errResponseTooLarge
			}
		}
		var err error
		if row[i], err = rs.decoders[i].decode(string(v)); err != nil {
			return &driverError{kind: "postgres", code: "XX000", message: "column " + strconv.Quote(fields[i].Name) + ": " + err.Error()}
		}
	}
	rs.rows = append(rs.rows, row)
	return nil
}
