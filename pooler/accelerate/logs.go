package accelerate

import (
	"errors"
	"strings"
	"time"
)

// The client asks for server logs in every request's X-Capture-Telemetry header ("error" by
// default, "warn, query" with log: ['query', 'warn']) and re-emits what comes back in
// "extensions.logs" as its own log events. This server produces the "query" entries (each
// statement with its parameters) and an "error" entry for a failed request.

// logSink collects one request's log entries at the levels the client asked for.
type logSink struct {
	wantQueries bool
	wantErrors  bool
	entries     []any
}

// newLogSink reads X-Capture-Telemetry; nil means the header was absent (no extensions).
func newLogSink(header string, present bool) *logSink {
	if !present {
		return nil
	}
	l := &logSink{}
	for _, level := range strings.Split(header, ",") {
		switch strings.TrimSpace(level) {
		case "query":
			l.wantQueries = true
		case "error":
			l.wantErrors = true
		}
	}
	return l
}

const zeroSpanID = "00000000000000000000000000000000-0000000000000000"

func logTimestamp(t time.Time) []any {
	ms := t.UnixMilli()
	return []any{float64(ms / 1000), float64(ms%1000) * 1e6}
}

// query logs one statement with its arguments (nil for none).
func (l *logSink) query(start time.Time, took time.Duration, sql string, args []any) {
	if l == nil || !l.wantQueries {
		return
	}
	params := logParams(args)
	l.entries = append(l.entries, recordOf(
		"level", "query", "spanId", zeroSpanID, "timestamp", logTimestamp(start.Add(took)), "message", "Query",
		"attributes", recordOf("timestamp", float64(start.UnixMilli()), "duration", float64(took.Microseconds())/1000,
			"query", sql, "params", params)))
}

// failure logs a failed request.
func (l *logSink) failure(err error, method, path, requestID string) {
	if l == nil || !l.wantErrors {
		return
	}
	l.entries = append(l.entries, recordOf(
		"level", "error", "spanId", zeroSpanID, "timestamp", logTimestamp(time.Now()), "message", "Error processing request",
		"attributes", recordOf("error", errorName(err)+": "+err.Error(), "method", method, "pathname", path, "requestId", requestID)))
}

func errorName(err error) string {
	var e *apiError
	if errors.As(err, &e) {
		switch e.status {
		case 409:
			return "TransactionManagerError"
		case 422:
			return "ResourceLimitError"
		}
		return "UserFacingError"
	}
	return "Error"
}

// extensions is the "extensions" member of the response, or nil.
func (l *logSink) extensions() *record {
	if l == nil {
		return nil
	}
	return recordOf("logs", l.entries)
}

// appendExtensions appends the JSON of extensions() (l is not nil).
func (l *logSink) appendExtensions(dst []byte) ([]byte, error) {
	if len(l.entries) == 0 { // what a query answers unless the client logs queries
		return append(dst, `{"logs":[]}`...), nil
	}
	return appendJSON(dst, l.extensions())
}
