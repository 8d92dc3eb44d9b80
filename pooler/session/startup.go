package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/pool"
)

// ServeConn runs one client session on conn until the client leaves, the session fails, or
// ctx ends. It closes conn. Errors are per client; the caller only logs them.
//
// The WebSocket transport calls it with Options{Secure: true, Cleartext: true} on a net.Conn
// that carries the binary frames' payload.
func (p *Proxy) ServeConn(ctx context.Context, conn net.Conn, opts Options) error {
	errc := make(chan error, 1)
	done := func(err error) { errc <- err }
	if rt, adm, ok := p.accept(conn, done); ok {
		p.serve(ctx, conn, opts, rt, adm, false, done)
	}
	return <-errc
}

// ServeConnAsync is ServeConn for listeners that accept many mostly idle clients: it returns
// at once and calls done once when the session ends. Between transactions a plain
// *net.TCPConn session keeps no goroutine at all: its socket waits in the idle-session reactor
// (reactor_linux.go), which resumes it on a fresh goroutine when the client sends or hangs up.
// Other conns (TLS, other platforms) wait on a fresh goroutine with a small stack instead of
// one grown by startup and query work.
func (p *Proxy) ServeConnAsync(ctx context.Context, conn net.Conn, opts Options, done func(error)) {
	// Admitted here, on the accept loop, so logins are admitted in the order they arrived.
	if rt, adm, ok := p.accept(conn, done); ok {
		go p.serve(ctx, conn, opts, rt, adm, true, done)
	}
}

// accept counts a new connection and admits it (admission.go), or refuses it and reports done.
func (p *Proxy) accept(conn net.Conn, done func(error)) (*Runtime, *admission, bool) {
	rt := p.Runtime()
	p.accepted.Add(1)
	adm, ok := p.admit(conn, rt)
	if !ok {
		refuseTooMany(conn)
		done(errors.New("too many clients"))
	}
	return rt, adm, ok
}

func (p *Proxy) serve(ctx context.Context, conn net.Conn, opts Options, rt *Runtime, adm *admission, park bool, done func(error)) {
	s := &session{proxy: p, conn: conn, opts: opts, rt: rt, secure: opts.Secure, park: park, done: done, ctx: ctx, adm: adm}
	s.r = &msgReader{conn: conn, maxBody: maxAuthMessageBytes}
	s.w = &msgWriter{conn: conn}
	s.setState(stateStartup)
	defer func() {
		if r := recover(); r != nil {
			p.admitted(adm)
			s.onPanic(r)
		}
	}()
	// The auth timeout counts from here: waiting for a place at the login cap is part of it.
	authBy := time.Now().Add(rt.AuthTimeout)
	if !p.settle(adm, rt, authBy) {
		refuseTooMany(conn)
		done(errors.New("too many clients"))
		return
	}
	_ = conn.SetDeadline(authBy)
	err := s.startup(ctx, authBy)
	p.admitted(adm)
	if err != nil {
		if !errors.Is(err, errCancelRequest) {
			p.Log.Debug("client startup failed", "remote", conn.RemoteAddr().String(), "err", err)
		}
		s.end(err) // registered when only the last write failed
		return
	}
	_ = conn.SetDeadline(time.Time{})
	s.r.maxBody = s.rt.MaxMessageBytes
	s.setState(StateIdle)
	s.loop(ctx)
}

// end releases everything the session holds and reports err to the caller, once. A session
// with a pid was registered and holds one of MaxClients' places (both taken together at the end
// of startup).
func (s *session) end(err error) {
	if s.ended {
		return
	}
	s.ended = true
	if s.pid != 0 {
		s.proxy.unregister(s)
		s.proxy.clients.Add(-1)
	}
	if s.r != nil { // nil only when a panic struck while the session was parked
		if s.pid != 0 {
			s.proxy.Observer.Bytes(s.r.bytesIn, s.w.bytesOut)
		}
		s.releaseBuffers()
	}
	s.withConn(func(c net.Conn) { _ = c.Close() })
	s.done(err)
}

// onPanic ends a session whose goroutine panicked (recovered by the caller), so a bug
// triggered by one client does not take the process down with every other client.
func (s *session) onPanic(r any) {
	remote := "unknown"
	s.withConn(func(c net.Conn) { remote = c.RemoteAddr().String() })
	s.proxy.Log.Error("client session panicked", "remote", remote, "panic", r,
		"stack", string(debug.Stack()))
	s.end(fmt.Errorf("session panic: %v", r))
}

var errCancelRequest = errors.New("cancel request handled")

// startup negotiates TLS, reads the StartupMessage, authenticates and greets the client, all by
// authBy (the auth timeout from the session's start).
func (s *session) startup(ctx context.Context, authBy time.Time) error {
	// The auth timeout bounds the whole startup, not only reads from the client: the TLS
	// handshake, and the wait for the upstream's parameters the first clients need (paramsOnce
	// queues them, and each one's pool wait alone may be longer than the auth timeout).
	ctx, cancel := context.WithDeadline(ctx, authBy)
	defer cancel()
	triedSSL, triedGSS := false, false
	var sp *startupPacket
	for sp == nil {
		body, err := readStartupPacket(s.conn)
		if err != nil {
			return err
		}
		s.proxy.spoke(s.adm)
		pkt, err := decodeStartupPacket(body)
		if err != nil {
			s.fatal("08P01", err.Error())
			return err
		}
		switch pkt.code {
		case codeCancel:
			s.proxy.cancel(pkt.cancel.pid, pkt.cancel.secret)
			return errCancelRequest
		case codeGSSENC:
			if triedGSS {
				s.fatal("08P01", "duplicate GSSENC negotiation")
				return fmt.Errorf("%w: duplicate GSSENCRequest", ErrProtocol)
			}
			triedGSS = true
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return err
			}
		case codeSSL:
			if triedSSL {
				s.fatal("08P01", "duplicate SSL negotiation")
				return fmt.Errorf("%w: duplicate SSLRequest", ErrProtocol)
			}
			triedSSL = true
			if s.rt.TLS == nil || s.secure {
				if _, err := s.conn.Write([]byte{'N'}); err != nil {
					return err
				}
				continue
			}
			if _, err := s.conn.Write([]byte{'S'}); err != nil {
				return err
			}
			transport := withRawIO(s.conn)
			if s.park && s.rt.RelayLoop {
				s.tlsSwap = &swapConn{Conn: transport} // the relay loop may run the session
				transport = s.tlsSwap
			}
			tconn := tls.Server(transport, s.rt.TLS)
			if err := tconn.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("tls handshake: %w", err)
			}
			s.conn = tconn
			s.r.conn, s.w.conn = tconn, tconn
			s.secure = true
		default:
			sp = pkt
		}
	}

	if s.proxy.draining.Load() {
		s.fatal("57P01", "the pooler is shutting down")
		return errors.New("draining")
	}
	if s.rt.MaxClients > 0 && s.proxy.clients.Load() >= int64(s.rt.MaxClients) {
		return s.refuseFull() // early, sparing the auth work; takeClientPlace decides
	}
	if _, ok := sp.params["replication"]; ok && sp.params["replication"] != "false" && sp.params["replication"] != "0" {
		s.fatal("08P01", "replication connections are not supported by the pooler")
		return errors.New("replication refused")
	}
	// Protocol 3.x with a newer minor version or _pq_ options: say what we speak (3.0).
	var unrecognized []string
	for _, k := range sp.order {
		if strings.HasPrefix(k, "_pq_.") {
			unrecognized = append(unrecognized, k)
		}
	}
	if sp.code&0xffff != 0 || len(unrecognized) > 0 {
		if err := s.w.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized}); err != nil {
			return err
		}
	}
	user := sp.params["user"]
	if user == "" {
		s.fatal("28000", "no user name specified in startup packet")
		return errors.New("no user")
	}
	database := sp.params["database"]
	if database == "" {
		database = user
	}
	s.user = user

	if retry, ok := s.rt.Guard.Allow(s.conn.RemoteAddr(), time.Now()); !ok {
		s.loginFailed(user, auth.ReasonOverBudget)
		s.fatal("08004", fmt.Sprintf("too many failed logins from this address; retry in %s", retry.Round(time.Second)+time.Second))
		return errors.New("source over its failed-login budget")
	}
	if err := s.authenticate(user); err != nil {
		return err
	}
	s.proxy.verified(s.adm)
	if database != s.rt.Database {
		s.fatal("3D000", fmt.Sprintf("database %q does not exist", database))
		return fmt.Errorf("unknown database %q", database)
	}
	params, err := s.proxy.serverParams(ctx)
	if err != nil {
		s.sendError(errorFor(err, "08006", "cannot reach the upstream database"), "FATAL")
		return fmt.Errorf("learn server parameters: %w", err)
	}
	// The place is taken before the client hears it is logged in: a client that connects after
	// that always finds it taken.
	if !s.proxy.takeClientPlace(s.rt.MaxClients) {
		return s.refuseFull()
	}
	s.proxy.register(s)
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	_ = s.w.encode(&pgproto3.AuthenticationOk{})
	s.defaults = s.proxy.paramDefaults(params)
	s.overrides = clientOverrides(s.defaults, sp.params)
	sentAppName := false
	for _, p := range params {
		v := p.value
		if name, ok := trackedName(p.name); ok {
			v = s.want(name)
		}
		sentAppName = sentAppName || p.name == "application_name"
		_ = s.w.encode(&pgproto3.ParameterStatus{Name: p.name, Value: v})
	}
	if !sentAppName {
		_ = s.w.encode(&pgproto3.ParameterStatus{Name: "application_name", Value: s.want("application_name")})
	}
	_ = s.w.encode(&pgproto3.ParameterStatus{Name: "session_authorization", Value: user})
	_ = s.w.encode(&pgproto3.BackendKeyData{ProcessID: s.pid, SecretKey: s.secret[:]})
	_ = s.w.encode(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return s.w.flush(true)
}

// refuseFull answers a login that finds MaxClients clients logged in (admitted while the
// last of them was still logging in), counted like the refusals at accept.
func (s *session) refuseFull() error {
	s.proxy.admissions.refused.Add(1)
	s.fatal("53300", "sorry, too many clients already")
	return errors.New("too many clients")
}

// authenticate runs SCRAM or a cleartext exchange for key name user. Cleartext is asked for
// only on an encrypted connection (TLS, or a transport secured outside the protocol) or with
// AllowCleartextWithoutTLS; elsewhere the client is asked for SCRAM.
func (s *session) authenticate(user string) error {
	s.setState(stateAuth)
	rt := s.rt
	cleartextOK := s.secure || rt.AllowCleartextWithoutTLS
	if cleartextOK && (s.opts.Cleartext || rt.PreferCleartext) {
		if err := s.w.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
			return err
		}
		body, err := s.readAuthMessage()
		if err != nil {
			return err
		}
		var pm pgproto3.PasswordMessage
		if err := pm.Decode(body); err != nil {
			s.loginFailed(user, auth.ReasonProtocol)
			s.fatal("08P01", "invalid password packet")
			return err
		}
		id, ok := rt.Keyring.CheckPassword(user, pm.Password, time.Now())
		if !ok {
			return s.authFailed(user)
		}
		s.key = id
		return nil
	}
	if err := s.w.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	body, err := s.readAuthMessage()
	if err != nil {
		return err
	}
	var initial pgproto3.SASLInitialResponse
	if err := initial.Decode(body); err != nil || initial.AuthMechanism != "SCRAM-SHA-256" {
		if s.opts.Cleartext {
			// The transport's clients send the key in cleartext (the Neon driver pipelines it
			// with the startup message): this was that key, on a connection that is not
			// encrypted. Say why instead of "malformed".
			s.loginFailed(user, auth.ReasonCleartextWithoutTLS)
			s.fatal("28000", "a cleartext password (API key) is refused on an unencrypted connection: connect over TLS (wss://)")
			return errors.New("cleartext password without TLS")
		}
		s.loginFailed(user, auth.ReasonProtocol)
		s.fatal("08P01", "expected SASL initial response with SCRAM-SHA-256")
		return fmt.Errorf("%w: bad SASLInitialResponse", ErrProtocol)
	}
	ex := rt.Keyring.NewSCRAM(user, time.Now())
	first, err := ex.ServerFirst(initial.Data)
	if err != nil {
		s.loginFailed(user, auth.ReasonProtocol)
		s.fatal("08P01", "malformed SCRAM message")
		return err
	}
	if err := s.w.send(&pgproto3.AuthenticationSASLContinue{Data: first}); err != nil {
		return err
	}
	body, err = s.readAuthMessage()
	if err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if err := resp.Decode(body); err != nil {
		s.loginFailed(user, auth.ReasonProtocol)
		s.fatal("08P01", "malformed SCRAM message")
		return err
	}
	final, ok, err := ex.ServerFinal(resp.Data)
	if err != nil {
		s.loginFailed(user, auth.ReasonProtocol)
		s.fatal("08P01", "malformed SCRAM message")
		return err
	}
	if !ok {
		return s.authFailed(user)
	}
	s.key = ex.Matched()
	return s.w.send(&pgproto3.AuthenticationSASLFinal{Data: final})
}

func (s *session) readAuthMessage() ([]byte, error) {
	typ, body, err := s.r.next()
	if err != nil {
		return nil, err
	}
	s.proxy.answered(s.adm)
	if typ != 'p' {
		s.loginFailed(s.user, auth.ReasonProtocol)
		s.fatal("08P01", fmt.Sprintf("expected password response, got message type %q", typ))
		return nil, fmt.Errorf("%w: unexpected message %q during auth", ErrProtocol, typ)
	}
	return body, nil
}

// authFailed refuses a wrong key. The client learns only that the login failed; the log and
// the metrics say whether the name exists.
func (s *session) authFailed(user string) error {
	reason := auth.ReasonUnknownName
	if s.rt.Keyring.Has(user) {
		reason = auth.ReasonWrongKey
	}
	s.loginFailed(user, reason)
	s.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", user))
	return errors.New("authentication failed")
}

// loginFailed reports a failed or refused login to the guard (log, metrics, source budget).
func (s *session) loginFailed(user, reason string) {
	transport := s.opts.Transport
	if transport == "" {
		transport = "tcp"
	}
	s.rt.Guard.Failed(auth.Attempt{Transport: transport, Remote: s.conn.RemoteAddr(), Name: user, Reason: reason}, time.Now())
}

// fatal sends a FATAL error; the caller then closes the connection.
func (s *session) fatal(code, msg string) {
	_ = s.w.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
}

// sendError sends e with the given severity.
func (s *session) sendError(e *pgconn.PgError, severity string) {
	_ = s.w.send(pgErrorResponse(e, severity))
}

func pgErrorResponse(e *pgconn.PgError, severity string) *pgproto3.ErrorResponse {
	if severity == "" {
		severity = e.Severity
	}
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: e.Code,
		Message: e.Message, Detail: e.Detail, Hint: e.Hint}
}

// errorFor turns err into a PgError for the client: a PgError (like the 53300 query-wait
// timeout) as is, anything else as code/msg without internal details.
func errorFor(err error, code, msg string) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	if errors.Is(err, pool.ErrClosed) {
		return &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "the pooler is shutting down"}
	}
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg}
}
