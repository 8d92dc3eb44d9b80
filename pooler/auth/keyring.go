// Package auth checks API keys: SCRAM-SHA-256 exchanges against stored verifiers and cleartext
// keys against stored digests. It knows nothing about transports; the session code (and the
// HTTP endpoint) feed it what the client sent.
//
// Every check does the same work whether the key name exists or not (the decoy salt and decoy
// verifiers are computed for every name, and every check compares against at least minChecks
// verifiers), so the answer time does not tell an attacker which key names exist. Unknown names
// get a salt derived from a decoy secret; replicas given the same secret (DecoySecret) answer
// the same salt for the same unknown name, as they do for a real one.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// minChecks is the number of verifiers every check compares against (real ones padded with
// decoys), so a name with one key costs the same as a name in a rotation or an unknown name.
const minChecks = 2

// Keyring is an immutable set of API keys; build a new one on reload and swap it atomically.
type Keyring struct {
	names  map[string]*keyEntry
	secret []byte // seeds decoy salts and keys: the shared DecoySecret, else one per process
}

// KeyID identifies one key of a name (the SHA-256 digest of the key): what a session
// authenticated with, checked again when the keys are reloaded.
type KeyID [sha256.Size]byte

type keyEntry struct {
	name       string
	salt       []byte
	iterations int
	verifiers  []keyVerifier
}

type keyVerifier struct {
	scram    apikey.SCRAMVerifier
	digest   []byte
	id       KeyID
	notAfter *time.Time
	decoy    bool
}

var processSecret = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// Option changes how a Keyring is built.
type Option func(*Keyring)

// DecoySecret seeds the decoy salts and verifiers of unknown names with secret instead of a
// random per-process value. Every replica of a pool must get the same secret.
func DecoySecret(secret []byte) Option {
	return func(k *Keyring) {
		if len(secret) > 0 {
			k.secret = secret
		}
	}
}

// NewKeyring parses the verifiers of keys. Verifiers of one name must share salt and iteration
// count (SCRAM announces them before the client proves anything).
func NewKeyring(keys []config.Key, opts ...Option) (*Keyring, error) {
	k := &Keyring{names: make(map[string]*keyEntry, len(keys)), secret: processSecret}
	for _, opt := range opts {
		opt(k)
	}
	for _, key := range keys {
		e := &keyEntry{name: key.Name}
		for i, v := range key.Verifiers {
			sv, err := apikey.ParseSCRAMVerifier(v.SCRAM)
			if err != nil {
				return nil, fmt.Errorf("key %q verifier %d: %w", key.Name, i, err)
			}
			digest, err := hex.DecodeString(v.SHA256)
			if err != nil || len(digest) != sha256.Size {
				return nil, fmt.Errorf("key %q verifier %d: sha256 must be 64 hex digits", key.Name, i)
			}
			if i == 0 {
				e.salt, e.iterations = sv.Salt, sv.Iterations
			} else if !hmac.Equal(sv.Salt, e.salt) || sv.Iterations != e.iterations {
				return nil, fmt.Errorf("key %q verifier %d: all verifiers of a name must share salt and iterations", key.Name, i)
			}
			e.verifiers = append(e.verifiers, keyVerifier{scram: sv, digest: digest, id: KeyID(digest), notAfter: v.NotAfter})
		}
		if len(e.verifiers) == 0 {
			continue // a name without verifiers cannot log in; treat it as unknown
		}
		k.names[key.Name] = e
	}
	return k, nil
}

// Len returns how many key names the keyring holds.
func (k *Keyring) Len() int { return len(k.names) }

// Has reports whether name is a key name (for logs after a failed login; never for the
// answer to the client).
func (k *Keyring) Has(name string) bool {
	_, ok := k.names[name]
	return ok
}

// lookup returns the entry of name padded with decoys to at least minChecks verifiers, or an
// all-decoy entry for an unknown name (with a salt derived from the name, so repeated probes
// see a stable salt). It does the same work either way: the decoy salt and minChecks decoys are
// computed whether or not they are used.
func (k *Keyring) lookup(name string) *keyEntry {
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte("salt:"))
	mac.Write([]byte(name))
	out := &keyEntry{name: name, salt: mac.Sum(nil)[:apikey.SaltLen], iterations: apikey.DefaultIterations}
	e, known := k.names[name]
	n := minChecks
	if known {
		out.salt, out.iterations = e.salt, e.iterations
		n = max(n, len(e.verifiers))
	}
	out.verifiers = make([]keyVerifier, n)
	for i := range out.verifiers {
		d := k.decoy(name, i)
		if known && i < len(e.verifiers) {
			out.verifiers[i] = e.verifiers[i]
		} else {
			out.verifiers[i] = d
		}
	}
	return out
}

func (k *Keyring) decoy(name string, i int) keyVerifier {
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte{'d', 'e', 'c', 'o', 'y', ':', byte('0' + i%10), ':'})
	mac.Write([]byte(name))
	sum := mac.Sum(nil)
	mac.Reset()
	mac.Write(sum)
	server := mac.Sum(nil)
	return keyVerifier{
		scram:  apikey.SCRAMVerifier{StoredKey: sum, ServerKey: server},
		digest: server,
		decoy:  true,
	}
}

func (v keyVerifier) valid(now time.Time) bool {
	return !v.decoy && (v.notAfter == nil || now.Before(*v.notAfter))
}

// CheckPassword reports whether key is a valid key of name, in time independent of whether
// the name exists and of which verifier matches, and which key it is.
func (k *Keyring) CheckPassword(name, key string, now time.Time) (KeyID, bool) {
	e := k.lookup(name)
	got := sha256.Sum256([]byte(key))
	match := 0
	for _, v := range e.verifiers {
		eq := subtle.ConstantTimeCompare(got[:], v.digest)
		if v.valid(now) {
			match |= eq
		}
	}
	return KeyID(got), match == 1
}

// Valid reports whether the key id of name is still valid at now: name not removed or
// disabled, the key not removed (rotated out) and not past its notAfter. Sessions are checked
// against the new keyring on reload.
func (k *Keyring) Valid(name string, id KeyID, now time.Time) bool {
	e, ok := k.names[name]
	if !ok {
		return false
	}
	for _, v := range e.verifiers {
		if v.id == id {
			return v.valid(now)
		}
	}
	return false
}

// FindKey returns the name of the key whose secret is key (for bearer tokens that carry no
// name). It compares against every key.
func (k *Keyring) FindKey(key string, now time.Time) (string, KeyID, bool) {
	got := sha256.Sum256([]byte(key))
	found := ""
	for name, e := range k.names {
		for _, v := range e.verifiers {
			if subtle.ConstantTimeCompare(got[:], v.digest) == 1 && v.valid(now) {
				found = name
			}
		}
	}
	return found, KeyID(got), found != ""
}
