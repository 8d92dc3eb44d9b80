package edge

import (
	"time"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// KeyChecker decides whether key is a valid API key; when user is not empty the key must
// belong to the key name user. It returns the key name, which scopes the query cache.
type KeyChecker interface {
	CheckKey(user, key string) (name string, ok bool)
}

// KeySet checks keys against the SHA-256 digests of the pooler config.
type KeySet struct {
	keys []config.Key
	now  func() time.Time
}

// NewKeySet returns a KeyChecker over keys; the pooler swaps in a new one on config reload.
func NewKeySet(keys []config.Key) *KeySet {
	return &KeySet{keys: keys, now: time.Now}
}

// CheckKey compares key with every stored digest in constant time each, and looks at all of
// them whatever matches, so the time taken does not tell which key came close.
func (s *KeySet) CheckKey(user, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	now := s.now()
	matched := ""
	for _, k := range s.keys {
		for _, v := range k.Verifiers {
			ok := apikey.MatchDigest(key, v.SHA256)
			if ok && (user == "" || user == k.Name) && (v.NotAfter == nil || now.Before(*v.NotAfter)) && matched == "" {
				matched = k.Name
			}
		}
	}
	return matched, matched != ""
}
