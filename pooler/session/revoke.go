package session

import (
	"time"

	"github.com/edgepool/edgepool/pooler/auth"
)

// Sessions whose key stops being valid — its name removed or disabled, the key rotated out, or
// past its notAfter — are closed at the next reload, as a drain closes them: at once when idle,
// after the current transaction otherwise (the transaction is not cut; it commits or rolls back
// as the client says).

// CloseRevoked marks every session whose key ring no longer accepts and closes it between
// transactions. It returns how many it marked.
func (p *Proxy) CloseRevoked(ring *auth.Keyring, now time.Time) int {
	p.mu.Lock()
	var revoked []*session
	for _, s := range p.sessions {
		if !s.revoked.Load() && !ring.Valid(s.user, s.key, now) {
			revoked = append(revoked, s)
		}
	}
	p.mu.Unlock()
	for _, s := range revoked {
		s.revoked.Store(true)
		s.kickRevoked()
	}
	return len(revoked)
}

// kickRevoked wakes a revoked session's read if it is between transactions: detached, or (in
// session mode, where the connection stays attached) with nothing in flight outside a
// transaction. Otherwise the pump wakes it when the transaction ends.
func (s *session) kickRevoked() {
	s.mu.Lock()
	detached := s.upstream == nil
	if detached || s.revokedBetweenTx() {
		s.deadlineSet = true
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	if detached {
		s.wake()
	}
}

// revokedBetweenTx: a revoked session-mode session attached with nothing in flight outside a
// transaction, which can end now. Called with s.mu held.
func (s *session) revokedBetweenTx() bool {
	return s.revoked.Load() && s.rt.SessionMode && s.upstream != nil && s.pending <= 0 && !s.inFlight && s.txStatus == 'I'
}

// ending reports whether the session must end as soon as it holds no upstream connection:
// the pooler drains, or its key was revoked.
func (s *session) ending() bool { return s.proxy.draining.Load() || s.revoked.Load() }

// endNotice is the message of the FATAL 57P01 a session that is ending gets.
func (s *session) endNotice() string {
	if s.revoked.Load() && !s.proxy.draining.Load() {
		return "terminating connection: the API key was disabled, removed or expired"
	}
	return "the pooler is shutting down"
}
