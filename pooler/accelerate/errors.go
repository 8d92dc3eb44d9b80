package accelerate

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors are answered the way Prisma's reference executor answers them, because the client
// turns the body's code, error and meta into the PrismaClientKnownRequestError the app sees:
//
//	400 {code, error, meta}  a user-facing error (P2002, P2025, P2010, ...)
//	409 {code, error, meta}  an interactive-transaction error (P2028)
//	422 {code, error}        a resource limit (query timeout, response size)
//	500 {error}              anything else

// apiError is an error with its HTTP answer.
type apiError struct {
	status     int
	code       string
	message    string
	meta       any   // *record, or nil for no meta
	cause      error // the database error it reports, if any
	retryAfter int   // seconds, for a 429
}

func (e *apiError) Error() string { return e.message }

func (e *apiError) Unwrap() error { return e.cause }

// userFacing is a Prisma user-facing error (HTTP 400).
func userFacing(code, message string, meta any) *apiError {
	if meta == nil {
		meta = newRecord(0)
	}
	return &apiError{status: http.StatusBadRequest, code: code, message: message, meta: meta}
}

// txAPIError is a transaction manager error (HTTP 409, P2028).
func txAPIError(message string, meta any) *apiError {
	if meta == nil {
		meta = newRecord(0)
	}
	return &apiError{status: http.StatusConflict, code: "P2028", message: "Transaction API error: " + message, meta: meta}
}

// resourceLimit is a limit the request ran into (HTTP 422). code is Accelerate's code for it,
// which the client shows when present.
func resourceLimit(code, message string) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: code, message: message}
}

// badRequest answers a request this server cannot read (HTTP 400, Accelerate's P6005).
func badRequest(message string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "P6005", message: message}
}

// errQueryTimeout is the cause of a request context that ran past the statement timeout.
var errQueryTimeout = errors.New("query timeout")

// driverError describes a database error as Prisma's pg driver adapter does: an error kind
// with the fields that kind carries, plus the original SQLSTATE and message.
type driverError struct {
	kind    string
	code    string // SQLSTATE
	message string // original message
	fields  []field
}

// asDriverError classifies err, or returns nil when it is not a database error.
func asDriverError(err error) *driverError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifyPgError(pgErr)
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if isConnectionLost(err) {
		return &driverError{kind: "ConnectionClosed"}
	}
	return nil
}

func isConnectionLost(err error) bool {
	s := err.Error()
	return strings.Contains(s, "conn closed") || strings.Contains(s, "unexpected EOF") ||
		strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

var (
	keyFieldsRe     = regexp.MustCompile(`Key \(([^)]+)\)`)
	columnMissingRe = regexp.MustCompile(`^column (.+) does not exist$`)
	quotedIdentRe   = regexp.MustCompile(`"((?:""|[^"])*)"`)
)

// classifyPgError maps a SQLSTATE to the adapter's error kind and its fields.
func classifyPgError(e *pgconn.PgError) *driverError {
	d := &driverError{code: e.Code, message: e.Message}
	keyFields := func() []string {
		m := keyFieldsRe.FindStringSubmatch(e.Detail)
		if m == nil {
			return nil
		}
		return strings.Split(m[1], ", ")
	}
	constraintFromColumnOrIndex := func() any {
		switch {
		case e.ColumnName != "":
			return recordOf("fields", []any{e.ColumnName})
		case e.ConstraintName != "":
			return recordOf("index", e.ConstraintName)
		}
		return undefined
	}
	quotedWord := func(msg string, word int) any { // message.split(" ")[word].split('"')[1]
		parts := strings.Split(msg, " ")
		if word >= len(parts) {
			return undefined
		}
		q := strings.Split(parts[word], `"`)
		if len(q) < 2 {
			return undefined
		}
		return q[1]
	}
	switch e.Code {
	case "22001":
		d.kind = "LengthMismatch"
		d.add("column", optString(e.ColumnName))
	case "22003":
		d.kind = "ValueOutOfRange"
		d.add("cause", e.Message)
	case "22P02":
		d.kind = "InvalidInputValue"
		d.add("message", e.Message)
	case "23505":
		d.kind = "UniqueConstraintViolation"
		fields := keyFields()
		var constraint any = undefined
		switch {
		case e.ConstraintName != "":
			constraint = recordOf("index", e.ConstraintName)
		case fields != nil:
			constraint = recordOf("fields", stringsToAny(fields))
		}
		var table any = undefined
		if e.TableName != "" {
			table = e.TableName
		} else if len(fields) > 0 {
			if suffix := "_" + strings.Join(fields, "_") + "_key"; strings.HasSuffix(e.ConstraintName, suffix) {
				table = strings.TrimSuffix(e.ConstraintName, suffix)
			}
		}
		d.add("constraint", constraint)
		d.add("table", table)
	case "23502":
		d.kind = "NullConstraintViolation"
		var constraint any = undefined
		if fields := keyFields(); fields != nil {
			constraint = recordOf("fields", stringsToAny(fields))
		}
		d.add("constraint", constraint)
	case "23503":
		d.kind = "ForeignKeyConstraintViolation"
		d.add("constraint", constraintFromColumnOrIndex())
	case "23001":
		d.kind = "RestrictViolation"
		d.add("constraint", constraintFromColumnOrIndex())
	case "3D000":
		d.kind = "DatabaseDoesNotExist"
		d.add("db", quotedWord(e.Message, 1))
	case "28000":
		d.kind = "DatabaseAccessDenied"
		var db any = undefined
		for _, part := range strings.Split(e.Message, ",") {
			if strings.HasPrefix(part, " database") {
				if q := strings.Split(part, `"`); len(q) > 1 {
					db = q[1]
				}
				break
			}
		}
		d.add("db", db)
	case "28P01":
		d.kind = "AuthenticationFailed"
		parts := strings.Split(e.Message, " ")
		var user any = undefined
		if q := strings.Split(parts[len(parts)-1], `"`); len(q) > 1 {
			user = q[1]
		}
		d.add("user", user)
	case "40001", "40P01":
		d.kind = "TransactionWriteConflict"
	case "42P01":
		d.kind = "TableDoesNotExist"
		d.add("table", quotedWord(e.Message, 1))
	case "42703":
		d.kind = "ColumnNotFound"
		var column any = undefined
		if m := columnMissingRe.FindStringSubmatch(e.Message); m != nil {
			column = quotedIdentRe.ReplaceAllStringFunc(m[1], func(q string) string {
				return strings.ReplaceAll(q[1:len(q)-1], `""`, `"`)
			})
		}
		d.add("column", column)
	case "42P04":
		d.kind = "DatabaseAlreadyExists"
		d.add("db", quotedWord(e.Message, 1))
	case "53300":
		d.kind = "TooManyConnections"
		d.add("cause", e.Message)
	default:
		d.kind = "postgres"
		d.add("code", e.Code)
		d.add("severity", e.Severity)
		d.add("message", e.Message)
		d.add("detail", optString(e.Detail))
		d.add("column", optString(e.ColumnName))
		d.add("hint", optString(e.Hint))
	}
	return d
}

func (d *driverError) add(name string, v any) { d.fields = append(d.fields, field{name, v}) }

func (d *driverError) get(name string) any {
	for _, f := range d.fields {
		if f.name == name {
			return f.value
		}
	}
	return undefined
}

// asMeta is the error as the adapter serialises it into meta.driverAdapterError.
func (d *driverError) asMeta() *record {
	cause := newRecord(len(d.fields) + 3)
	if d.code != "" {
		cause.set("originalCode", d.code)
		cause.set("originalMessage", d.message)
	}
	cause.set("kind", d.kind)
	for _, f := range d.fields {
		cause.set(f.name, f.value)
	}
	r := newRecord(2)
	r.set("name", "DriverAdapterError")
	r.set("cause", cause)
	return r
}

// prismaCode is the P-code of the error kind ("" for the generic "postgres" kind).
func (d *driverError) prismaCode() string {
	switch d.kind {
	case "AuthenticationFailed":
		return "P1000"
	case "DatabaseDoesNotExist":
		return "P1003"
	case "DatabaseAlreadyExists":
		return "P1009"
	case "DatabaseAccessDenied":
		return "P1010"
	case "ConnectionClosed":
		return "P1017"
	case "LengthMismatch":
		return "P2000"
	case "UniqueConstraintViolation":
		return "P2002"
	case "ForeignKeyConstraintViolation", "RestrictViolation":
		return "P2003"
	case "InvalidInputValue":
		return "P2007"
	case "UnsupportedNativeDataType":
		return "P2010"
	case "NullConstraintViolation":
		return "P2011"
	case "ValueOutOfRange":
		return "P2020"
	case "TableDoesNotExist":
		return "P2021"
	case "ColumnNotFound":
		return "P2022"
	case "TransactionWriteConflict":
		return "P2034"
	case "TooManyConnections":
		return "P2037"
	}
	return ""
}

// prismaMessage is the user-facing message of the error kind.
func (d *driverError) prismaMessage() string {
	str := func(name string) string {
		if s, ok := d.get(name).(string); ok {
			return s
		}
		return "(not available)"
	}
	switch d.kind {
	case "AuthenticationFailed":
		return "Authentication failed against the database server, the provided database credentials for `" + str("user") + "` are not valid"
	case "DatabaseDoesNotExist":
		return "Database `" + str("db") + "` does not exist on the database server"
	case "DatabaseAlreadyExists":
		return "Database `" + str("db") + "` already exists on the database server"
	case "DatabaseAccessDenied":
		return "User was denied access on the database `" + str("db") + "`"
	case "ConnectionClosed":
		return "Server has closed the connection."
	case "LengthMismatch":
		return "The provided value for the column is too long for the column's type. Column: " + str("column")
	case "UniqueConstraintViolation":
		return "Unique constraint failed on the " + renderConstraint(d.get("constraint"))
	case "ForeignKeyConstraintViolation", "RestrictViolation":
		return "Foreign key constraint violated on the " + renderConstraint(d.get("constraint"))
	case "UnsupportedNativeDataType":
		return "Failed to deserialize column of type '" + str("type") + "'. If you're using $queryRaw and this column is explicitly marked as `Unsupported` in your Prisma schema, try casting this column to any supported Prisma type such as `String`."
	case "NullConstraintViolation":
		return "Null constraint violation on the " + renderConstraint(d.get("constraint"))
	case "ValueOutOfRange":
		return "Value out of range for the type: " + str("cause")
	case "TableDoesNotExist":
		return "The table `" + str("table") + "` does not exist in the current database."
	case "ColumnNotFound":
		return "The column `" + str("column") + "` does not exist in the current database."
	case "TransactionWriteConflict":
		return "Transaction failed due to a write conflict or a deadlock. Please retry your transaction"
	case "TooManyConnections":
		return "Too many database connections opened: " + str("cause")
	case "InvalidInputValue":
		return "Invalid input value: " + str("message")
	}
	return ""
}

func renderConstraint(c any) string {
	r, ok := c.(*record)
	if !ok {
		return "(not available)"
	}
	if fields, ok := r.get("fields"); ok {
		var names []string
		for _, f := range asList(fields) {
			names = append(names, "`"+jsToString(f)+"`")
		}
		return "fields: (" + strings.Join(names, ", ") + ")"
	}
	if index, ok := r.get("index"); ok {
		return "constraint: `" + jsToString(index) + "`"
	}
	if _, ok := r.get("foreignKey"); ok {
		return "foreign key"
	}
	return "(not available)"
}

// originalMessage is the message raw-query and generic errors quote.
func (d *driverError) originalMessage() string {
	if d.code != "" {
		return d.message
	}
	if m := d.prismaMessage(); m != "" {
		return m
	}
	return "N/A"
}

func (d *driverError) originalCode() string {
	if d.code == "" {
		return "N/A"
	}
	return d.code
}

// userFacingDBError turns a database error of a query into the error the client sees: a
// raw query's error is P2010; otherwise the kind's P-code, or P2039 for an unmapped SQLSTATE.
func userFacingDBError(d *driverError, raw bool) *apiError {
	meta := recordOf("driverAdapterError", d.asMeta())
	if raw {
		return userFacing("P2010", "Raw query failed. Code: `"+d.originalCode()+"`. Message: `"+d.originalMessage()+"`", meta)
	}
	if code := d.prismaCode(); code != "" {
		if d.kind == "UniqueConstraintViolation" {
			if t, ok := d.get("table").(string); ok {
				meta.set("table", t)
			}
		}
		return userFacing(code, d.prismaMessage(), meta)
	}
	return userFacing("P2039", "Database error. Code: `"+d.originalCode()+"`. Message: `"+d.originalMessage()+"`", meta)
}

// recordOf builds a record from name/value pairs.
func recordOf(kv ...any) *record {
	r := newRecord(len(kv) / 2)
	for i := 0; i+1 < len(kv); i += 2 {
		r.set(kv[i].(string), kv[i+1])
	}
	return r
}

func stringsToAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// optString is s, or undefined (left out of JSON) when empty.
func optString(s string) any {
	if s == "" {
		return undefined
	}
	return s
}
