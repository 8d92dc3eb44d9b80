package edge

import (
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
