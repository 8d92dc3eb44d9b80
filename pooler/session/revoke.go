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
		s.kickIfIdle()
	}
	return len(revoked)
}

// kickIfIdle makes a session that must end (ending) and waits for its client between
// transactions end now: a parked one is resumed, one waiting on its goroutine is kicked. A
// session inside a transaction ends when it next waits between transactions (waitClient).
func (s *session) kickIfIdle() {
	switch ph, _ := s.activity.get(); ph {
	case phaseIdle, phaseParked, phaseSessionIdle:
		if !s.wake() { // a resumed session sees that it is ending itself
			s.kickRead(kickEnd, 0)
		}
	}
}

// ending reports whether the session must end as soon as it is between transactions: the
// pooler drains, or its key was revoked.
func (s *session) ending() bool { return s.proxy.draining.Load() || s.revoked.Load() }

// endNotice is the message of the FATAL 57P01 a session that is ending gets.
func (s *session) endNotice() string {
	if s.revoked.Load() && !s.proxy.draining.Load() {
		return "terminating connection: the API key was disabled, removed or expired"
	}
	return "the pooler is shutting down"
}

// endNow tells an ending session's client why it is closed; the caller returns errEnded.
func (s *session) endNow() error {
	s.fatal("57P01", s.endNotice())
	return errEnded
}
