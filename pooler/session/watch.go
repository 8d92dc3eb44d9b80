package session

import (
	"sync/atomic"
	"time"
)

// In session mode a client keeps its connection between transactions, and the server may speak
// while the client is silent: a NOTIFY for its LISTEN, a NOTICE, a FATAL before it closes the
// connection. While the client loop waits for the client, a watcher goroutine relays those.
// It runs only in that wait; the loop stops it before it touches the connection again.
type watcher struct {
	done     chan struct{}
	stopping atomic.Bool
	err      error
}

func (s *session) startWatch() {
	if s.srv.watch != nil {
		return
	}
	w := &watcher{done: make(chan struct{})}
	s.srv.watch = w
	go s.watchUpstream(w)
}

func (s *session) watchUpstream(w *watcher) {
	defer close(w.done)
	for {
		err := s.srv.in.fill(s.srv.reader())
		if err == nil {
			err = s.relayBuffered(false)
		} else if !w.stopping.Load() {
			err = s.upstreamFailed(err)
		}
		if err != nil {
			if !w.stopping.Load() {
				w.err = err
				s.kickRead(kickUpstream, 0) // wake the loop to end the session
			}
			return
		}
	}
}

// stopWatch stops the watcher, if one runs, and returns what it failed with.
func (s *session) stopWatch() error {
	if s.srv == nil || s.srv.watch == nil {
		return nil
	}
	w := s.srv.watch
	s.srv.watch = nil
	w.stopping.Store(true)
	_ = s.srv.conn.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	_ = s.srv.conn.SetReadDeadline(time.Time{})
	return w.err
}
