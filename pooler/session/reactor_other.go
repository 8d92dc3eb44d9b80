//go:build !linux

package session

// parkIdle: without epoll, an idle session waits on a fresh goroutine with a small stack
// (ServeConn: on its own), holding no buffer. See reactor_linux.go.
func (s *session) parkIdle() error {
	s.parkNext = false
	if !s.park {
		return s.waitParked()
	}
	s.enter(phaseParked)
	go s.resumeAfterWait()
	return errParked
}

// wake is a no-op: nothing is ever parked without a goroutine.
func (s *session) wake() bool { return false }

// unparkSocket is a no-op: sessions keep their net.Conn.
func (s *session) unparkSocket() error { return nil }

// The relay loop is Linux only (evloop_linux.go).
func (s *session) loopable() bool  { return false }
func (s *session) enterLoop() bool { return false }
func (s *session) postCheck()      {}
