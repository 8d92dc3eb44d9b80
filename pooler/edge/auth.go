package edge

import (
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/edgepool/edgepool/pooler/auth"
)

// KeyChecker decides whether key is a valid API key; when user is not empty the key must
// belong to the key name user. It returns the key name, which scopes the query cache.
type KeyChecker interface {
	CheckKey(user, key string) (name string, ok bool)
}

// keyringChecker checks keys with the pooler's keyring (constant-time digest comparisons,
// the same code that checks cleartext passwords of wire-protocol clients).
type keyringChecker struct{ k *auth.Keyring }

// KeyringChecker returns a KeyChecker over a fixed keyring.
func KeyringChecker(k *auth.Keyring) KeyChecker { return keyringChecker{k} }

func (c keyringChecker) CheckKey(user, key string) (string, bool) { return checkKey(c.k, user, key) }

// Has reports whether name is a key name (for the log of a failed check only).
func (c keyringChecker) Has(name string) bool { return c.k != nil && c.k.Has(name) }

// KeyringFunc returns a KeyChecker that asks current for the keyring in force at each request,
// so a config reload that swaps the keyring applies to HTTP at once.
func KeyringFunc(current func() *auth.Keyring) KeyChecker { return keyringFunc(current) }

type keyringFunc func() *auth.Keyring

func (f keyringFunc) CheckKey(user, key string) (string, bool) { return checkKey(f(), user, key) }

// Has reports whether name is a key name (for the log of a failed check only).
func (f keyringFunc) Has(name string) bool { k := f(); return k != nil && k.Has(name) }

func checkKey(k *auth.Keyring, user, key string) (string, bool) {
	if key == "" || k == nil {
		return "", false
	}
	now := time.Now()
	if user == "" { // a bearer token carries no name
		name, _, ok := k.FindKey(key, now)
		return name, ok
	}
	_, ok := k.CheckPassword(user, key, now)
	return user, ok
}

// KeyGate checks a key sent in an HTTP request the same way for every HTTP protocol on the
// listener (POST /sql, Prisma Accelerate): only over TLS unless cleartext is allowed, only
// from a source within its failed-login budget; every refusal is reported to the guard (log,
// metrics, budget). Each protocol answers a refusal in its own format.
type KeyGate struct {
	Keys  KeyChecker
	Guard *auth.Guard // nil: no log, metrics or budget
	// CleartextAllowed reports whether a key may arrive over plain HTTP; nil means never.
	CleartextAllowed func() bool
}

// KeyRefusal is why KeyGate refused a key.
type KeyRefusal int

// Refusals: answer 403, 429 (with Retry-After) and 401.
const (
	KeyAccepted KeyRefusal = iota
	KeyOverPlainHTTP
	KeySourceOverBudget
	KeyInvalid
)

// MsgKeyOverPlainHTTP is the message of a KeyOverPlainHTTP refusal.
const MsgKeyOverPlainHTTP = "the API key was sent over plain HTTP and is refused: use https:// (or set allowCleartextWithoutTLS)"

// Check checks key, of key name user ("" for a bearer token), sent in r. It returns the key
// name, or why it refused the key and, for KeySourceOverBudget, when to retry.
func (g KeyGate) Check(r *http.Request, user, key string) (string, KeyRefusal, time.Duration) {
	remote := remoteAddr(r)
	now := time.Now()
	fail := func(reason string) {
		g.Guard.Failed(auth.Attempt{Transport: "http", Remote: remote, Name: user, Reason: reason}, now)
	}
	if r.TLS == nil && (g.CleartextAllowed == nil || !g.CleartextAllowed()) {
		fail(auth.ReasonCleartextWithoutTLS)
		return "", KeyOverPlainHTTP, 0
	}
	if retry, ok := g.Guard.Allow(remote, now); !ok {
		fail(auth.ReasonOverBudget)
		return "", KeySourceOverBudget, retry
	}
	name, ok := g.Keys.CheckKey(user, key)
	if !ok {
		reason := auth.ReasonWrongKey
		if known, canTell := g.Keys.(interface{ Has(string) bool }); canTell && user != "" && !known.Has(user) {
			reason = auth.ReasonUnknownName
		}
		fail(reason)
		return "", KeyInvalid, 0
	}
	return name, KeyAccepted, 0
}

// remoteAddr is the client's address (the TCP peer; a proxy in front is that proxy).
func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}
