package edge

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter caps the requests in flight on the HTTP listener: in total, counted before the key is
// checked (so a flood without keys is bounded too), and per API key name, counted after (so
// one key's slow or heavy requests cannot take the slots of every other key). One Limiter is
// shared by every handler on the listener (POST /sql, Prisma Accelerate): a key's budget covers
// all of them. A nil Limiter limits nothing.
type Limiter struct {
	total, perKey atomic.Int64
	n             atomic.Int64
	mu            sync.Mutex
	keys          map[string]int64
}

// NewLimiter returns a Limiter with total and per-key caps (0: no cap).
func NewLimiter(total, perKey int) *Limiter {
	l := &Limiter{keys: map[string]int64{}}
	l.SetLimits(total, perKey)
	return l
}

// SetLimits changes the caps (config reload); requests in flight keep their slots.
func (l *Limiter) SetLimits(total, perKey int) {
	l.total.Store(int64(total))
	l.perKey.Store(int64(perKey))
}

// Enter takes one of the total slots. When none is free it reports false (answer 429) and
// takes nothing; otherwise the caller must call release once.
func (l *Limiter) Enter() (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	if n, total := l.n.Add(1), l.total.Load(); total > 0 && n > total {
		l.n.Add(-1)
		return nil, false
	}
	return func() { l.n.Add(-1) }, true
}

// EnterKey takes one of key name's slots, like Enter.
func (l *Limiter) EnterKey(name string) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	perKey := l.perKey.Load()
	if perKey <= 0 {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys[name] >= perKey {
		return nil, false
	}
	l.keys[name]++
	return func() {
		l.mu.Lock()
		if l.keys[name]--; l.keys[name] <= 0 {
			delete(l.keys, name)
		}
		l.mu.Unlock()
	}, true
}

// InFlight is the number of requests holding a total slot.
func (l *Limiter) InFlight() int64 {
	if l == nil {
		return 0
	}
	return l.n.Load()
}

// ErrBodyTimeout means the client did not send its whole request body in time.
var ErrBodyTimeout = errors.New("request body not received in time")

// preallocatedBody is the largest declared Content-Length ReadBody reads into a buffer of that
// size at once; a larger body grows as it arrives, so a Content-Length alone never makes the
// server set memory aside.
const preallocatedBody = 16 << 10

// ReadBody reads the request body, at most maxBytes (more fails with *http.MaxBytesError) and
// within timeout from now (slower fails with ErrBodyTimeout), so a client that trickles its
// body cannot hold a request slot for long. It closes the connection on failure.
func ReadBody(w http.ResponseWriter, r *http.Request, maxBytes int, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	if timeout > 0 {
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
	}
	var body []byte
	var err error
	limited := http.MaxBytesReader(w, r.Body, int64(maxBytes))
	if n := r.ContentLength; n >= 0 && n <= int64(min(maxBytes, preallocatedBody)) {
		body = make([]byte, n) // net/http holds the body to its Content-Length
		_, err = io.ReadFull(limited, body)
	} else {
		body, err = io.ReadAll(limited)
	}
	if err != nil {
		// The deadline stays: net/http must not wait for the rest of the body either.
		w.Header().Set("Connection", "close")
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, ErrBodyTimeout
		}
		return nil, err
	}
	if timeout > 0 {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, nil
}
