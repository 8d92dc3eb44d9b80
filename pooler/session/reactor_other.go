//go:build !linux

package session

// Without epoll, an idle session waits on a fresh goroutine with a small stack.
func (s *session) parkIdle() { go s.resume() }

// wake is a no-op: nothing is ever parked without a goroutine.
func (s *session) wake() {}
