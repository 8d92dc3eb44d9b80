package auth

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Failure reasons: the `reason` label of edgepool_auth_failures_total and of the log line.
const (
	ReasonWrongKey            = "wrong_key"             // a known name (or a bearer token) with a key that is not valid
	ReasonUnknownName         = "unknown_key_name"      // no key of that name
	ReasonProtocol            = "protocol_error"        // malformed or unexpected authentication messages
	ReasonCleartextWithoutTLS = "cleartext_without_tls" // a cleartext key on a connection that is not encrypted
	ReasonOverBudget          = "too_many_failures"     // refused before checking: the source is over its failure budget
	ReasonNoKey               = "no_key"                // HTTP request without a key
)

// GuardSettings are the live-tunable limits of a Guard.
type GuardSettings struct {
	// MaxFailuresPerSource is how many failed logins a source address may make in a burst;
	// after that it earns one more every FailureWindow/MaxFailuresPerSource, and its logins are
	// refused before any check until then. 0 turns the budget off.
	MaxFailuresPerSource int
	// FailureWindow is the time in which a source's budget refills completely.
	FailureWindow time.Duration
}

// Attempt describes a failed or refused login for the log and the metrics. It never holds the
// key.
type Attempt struct {
	Transport string   // tcp, websocket or http
	Remote    net.Addr // the client's address (nil if unknown)
	Name      string   // the key name the client gave ("" for a bearer token)
	Reason    string
}

const (
	logPerSecond = 10 // failure log lines per second, after a burst of logBurst
	logBurst     = 50 //
	maxSources   = 1 << 16
	// summaryAfter is how long after the first suppressed line the count of suppressed ones is
	// logged, if no line got through meanwhile.
	summaryAfter = 10 * time.Second
)

// Guard watches failed logins across every transport (a nil Guard allows everything and
// records nothing): it logs each one (rate-limited, with a
// count of those it left out), counts them for metrics, and keeps a failure budget per source
// address, like PostgreSQL's auth_delay but without holding the connection: a source over its
// budget is refused at once, before any work on its key.
type Guard struct {
	log       *slog.Logger
	onFailure func(transport, reason string)

	mu         sync.Mutex
	settings   GuardSettings
	sources    map[netip.Addr]*budget
	logTokens  float64
	logAt      time.Time
	suppressed int
	summary    *time.Timer
}

type budget struct {
	tokens float64
	at     time.Time
}

// NewGuard returns a Guard that logs to log and reports each failure to onFailure (metrics;
// may be nil).
func NewGuard(log *slog.Logger, onFailure func(transport, reason string), s GuardSettings) *Guard {
	if log == nil {
		log = slog.Default()
	}
	if onFailure == nil {
		onFailure = func(string, string) {}
	}
	return &Guard{log: log, onFailure: onFailure, settings: s, sources: map[netip.Addr]*budget{}, logTokens: logBurst}
}

// Update applies new settings (config reload); budgets already spent are kept.
func (g *Guard) Update(s GuardSettings) {
	g.mu.Lock()
	g.settings = s
	g.mu.Unlock()
}

// Allow reports whether a login from remote may go ahead. When it may not, retryAfter says
// when the source's budget allows the next attempt; the caller refuses the login and calls
// Failed with ReasonOverBudget.
func (g *Guard) Allow(remote net.Addr, now time.Time) (retryAfter time.Duration, ok bool) {
	if g == nil {
		return 0, true
	}
	src, known := sourceOf(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !known || g.settings.MaxFailuresPerSource <= 0 {
		return 0, true
	}
	b := g.sources[src]
	if b == nil {
		return 0, true
	}
	g.refill(b, now)
	if b.tokens >= 1 {
		return 0, true
	}
	return time.Duration((1 - b.tokens) / g.rate()), false
}

// Failed records a failed or refused login: it spends the source's budget (not for refusals,
// which cost nothing), logs it unless too many were logged lately, and counts it.
func (g *Guard) Failed(a Attempt, now time.Time) {
	if g == nil {
		return
	}
	g.onFailure(a.Transport, a.Reason)
	src, known := sourceOf(a.Remote)
	g.mu.Lock()
	if known && a.Reason != ReasonOverBudget && g.settings.MaxFailuresPerSource > 0 {
		b := g.sources[src]
		if b == nil {
			if len(g.sources) >= maxSources {
				g.prune(now)
			}
			b = &budget{tokens: float64(g.settings.MaxFailuresPerSource), at: now}
			if len(g.sources) < maxSources {
				g.sources[src] = b
			}
		}
		g.refill(b, now)
		b.tokens = max(b.tokens-1, 0)
	}
	logIt, suppressed := g.takeLogToken(now)
	g.mu.Unlock()
	if !logIt {
		return
	}
	remote := ""
	if a.Remote != nil {
		remote = a.Remote.String()
	}
	attrs := []any{"transport", a.Transport, "remote", remote, "keyName", a.Name, "reason", a.Reason}
	if suppressed > 0 {
		attrs = append(attrs, "notLoggedBefore", suppressed)
	}
	g.log.Info("authentication failed", attrs...)
}

// rate is the refill rate in tokens per nanosecond. Called with mu held.
func (g *Guard) rate() float64 {
	w := g.settings.FailureWindow
	if w <= 0 {
		w = time.Minute
	}
	return float64(g.settings.MaxFailuresPerSource) / float64(w)
}

func (g *Guard) refill(b *budget, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.tokens+float64(d)*g.rate(), float64(g.settings.MaxFailuresPerSource))
		b.at = now
	}
}

// prune drops sources whose budget has refilled: they are as good as new.
func (g *Guard) prune(now time.Time) {
	for src, b := range g.sources {
		g.refill(b, now)
		if b.tokens >= float64(g.settings.MaxFailuresPerSource) {
			delete(g.sources, src)
		}
	}
}

// takeLogToken decides whether this failure is logged; when it is, it returns how many were
// left out before it. When one is left out, a summary line follows later unless a logged
// line carries the count first. Called with mu held.
func (g *Guard) takeLogToken(now time.Time) (bool, int) {
	if d := now.Sub(g.logAt); d > 0 {
		g.logTokens = min(g.logTokens+d.Seconds()*logPerSecond, logBurst)
		g.logAt = now
	}
	if g.logTokens >= 1 {
		g.logTokens--
		n := g.suppressed
		g.suppressed = 0
		return true, n
	}
	g.suppressed++
	if g.summary == nil {
		g.summary = time.AfterFunc(summaryAfter, g.logSummary)
	}
	return false, 0
}

func (g *Guard) logSummary() {
	g.mu.Lock()
	n := g.suppressed
	g.suppressed = 0
	g.summary = nil
	g.mu.Unlock()
	if n > 0 {
		g.log.Info("authentication failures not logged (rate limit); see edgepool_auth_failures_total", "count", n)
	}
}

// sourceOf is the budget key of a remote address: the IP, or its /64 for IPv6 (one host
// usually holds a whole /64).
func sourceOf(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}
