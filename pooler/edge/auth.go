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

// KeyringChecker returns a KeyChecker over k; on config reload build a new one and SetKeys it.
func KeyringChecker(k *auth.Keyring) KeyChecker { return keyringChecker{k} }

func (c keyringChecker) CheckKey(user, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	now := time.Now()
	if user == "" { // a bearer token carries no name
		return c.k.FindKey(key, now)
	}
	return user, c.k.CheckPassword(user, key, now)
}
