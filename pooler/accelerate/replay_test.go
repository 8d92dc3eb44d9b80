package accelerate

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/pooler/edge"
)

// replayUpstream lends one connection whose backend answers from memory: each statement (SQL,
// parameters and their formats) is run once on the real database and its answer replayed
// after. The client side is the real pgconn over an in-memory pipe, so a benchmark on it
// measures this package's CPU per request without PostgreSQL's, the socket's or their noise.
// It serves one request at a time.
type replayUpstream struct {
	conn *pgconn.PgConn // the client end, lent to every request
}

// newReplayUpstream connects to db through the replaying backend.
func newReplayUpstream(tb testing.TB, db string) *replayUpstream {
	tb.Helper()
	ctx := context.Background()
	direct, err := pgconn.Connect(ctx, pg.DSN(db))
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := pgconn.ParseConfig(pg.DSN(db))
	if err != nil {
		tb.Fatal(err)
	}
	backendDone := make(chan struct{})
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer close(backendDone)
			serveReplay(server, direct)
		}()
		return client, nil
	}
	cfg.Fallbacks = nil
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close(ctx)
		<-backendDone
		_ = direct.Close(ctx)
	})
	return &replayUpstream{conn: conn}
}

func (u *replayUpstream) Acquire(context.Context) (edge.Lease, error) {
	return replayLease{u.conn}, nil
}

type replayLease struct{ conn *pgconn.PgConn }

func (l replayLease) PgConn() *pgconn.PgConn { return l.conn }
func (l replayLease) Release()               {}

// serveReplay is the backend: startup, then statements answered from memory (a statement seen
// the first time is run on the real database). It returns when the client terminates or goes away.
func serveReplay(conn net.Conn, direct *pgconn.PgConn) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	answers := map[string][]pgproto3.BackendMessage{}
	var key []byte // statement, parameter formats and parameters, length-prefixed
	answer := func(sql string, params [][]byte, formats []int16, simple bool) []pgproto3.BackendMessage {
		key = binary.AppendUvarint(key[:0], uint64(len(sql)))
		key = append(key, sql...)
		for _, f := range formats {
			key = binary.AppendVarint(key, int64(f))
		}
		key = append(key, '|')
		for _, p := range params {
			n := int64(len(p))
			if p == nil {
				n = -1
			}
			key = append(binary.AppendVarint(key, n), p...)
		}
		a, ok := answers[string(key)]
		if !ok {
			a = runDirect(direct, sql, params, formats, simple)
			answers[string(key)] = a
		}
		return a
	}
	var sql string
	var pending []pgproto3.BackendMessage // the extended-protocol answer, sent at Sync
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		var reply []pgproto3.BackendMessage
		switch m := msg.(type) {
		case *pgproto3.Parse:
			sql = m.Query
		case *pgproto3.Bind:
			pending = answer(sql, m.Parameters, m.ParameterFormatCodes, false)
		case *pgproto3.Describe, *pgproto3.Execute:
		case *pgproto3.Sync:
			reply, pending = pending, nil
		case *pgproto3.Query:
			reply = answer(m.String, nil, nil, true)
		case *pgproto3.Terminate:
			return
		default:
			reply = []pgproto3.BackendMessage{
				&pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000", Message: "the replaying backend does not support this message"},
				&pgproto3.ReadyForQuery{TxStatus: 'I'}}
		}
		for _, r := range reply {
			be.Send(r)
		}
		if len(reply) > 0 && be.Flush() != nil {
			return
		}
	}
}

// runDirect runs a statement on the real database and returns the backend messages of its
// answer.
func runDirect(direct *pgconn.PgConn, sql string, params [][]byte, formats []int16, simple bool) []pgproto3.BackendMessage {
	ctx := context.Background()
	var out []pgproto3.BackendMessage
	var err error
	if simple {
		mrr := direct.Exec(ctx, sql)
		for err == nil && mrr.NextResult() {
			out, err = appendResult(out, mrr.ResultReader(), false)
		}
		if closeErr := mrr.Close(); err == nil {
			err = closeErr
		}
	} else {
		out = append(out, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{})
		out, err = appendResult(out, direct.ExecParams(ctx, sql, params, nil, formats, nil), true)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		out = append(out, &pgproto3.ErrorResponse{Severity: pgErr.Severity, Code: pgErr.Code, Message: pgErr.Message})
	} else if err != nil {
		out = append(out, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "XX000", Message: err.Error()})
	}
	return append(out, &pgproto3.ReadyForQuery{TxStatus: direct.TxStatus()})
}

// appendResult appends the messages of one statement's result: its row description (NoData
// for a statement without rows, in the extended protocol), rows and command tag.
func appendResult(out []pgproto3.BackendMessage, rr *pgconn.ResultReader, extended bool) ([]pgproto3.BackendMessage, error) {
	if fds := rr.FieldDescriptions(); len(fds) > 0 {
		fields := make([]pgproto3.FieldDescription, len(fds))
		for i, f := range fds {
			fields[i] = pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID,
				TableAttributeNumber: f.TableAttributeNumber, DataTypeOID: f.DataTypeOID,
				DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format}
		}
		out = append(out, &pgproto3.RowDescription{Fields: fields})
	} else if extended {
		out = append(out, &pgproto3.NoData{})
	}
	for rr.NextRow() {
		row := make([][]byte, len(rr.Values()))
		for i, v := range rr.Values() {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		out = append(out, &pgproto3.DataRow{Values: row})
	}
	tag, err := rr.Close()
	if err != nil {
		return out, err
	}
	return append(out, &pgproto3.CommandComplete{CommandTag: []byte(tag.String())}), nil
}
