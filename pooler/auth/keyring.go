// Package auth checks API keys: SCRAM-SHA-256 exchanges against stored verifiers and cleartext
// keys against stored digests. It knows nothing about transports; the session code (and the
// HTTP endpoint) feed it what the client sent.
//
// Every check does the same work whether the key name exists or not and whatever the number of
// verifiers of a name, so neither the answer time nor the SCRAM salt tells an attacker which
// key names exist.
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
	secret []byte // seeds decoy salts and keys, stable for the process
}

type keyEntry struct {
	name       string
	salt       []byte
	iterations int
	verifiers  []keyVerifier
}

type keyVerifier struct {
	scram    apikey.SCRAMVerifier
	digest   []byte
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

// NewKeyring parses the verifiers of keys. Verifiers of one name must share salt and iteration
// count (SCRAM announces them before the client proves anything).
func NewKeyring(keys []config.Key) (*Keyring, error) {
	k := &Keyring{names: make(map[string]*keyEntry, len(keys)), secret: processSecret}
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
			e.verifiers = append(e.verifiers, keyVerifier{scram: sv, digest: digest, notAfter: v.NotAfter})
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

// lookup returns the entry of name padded with decoys, or an all-decoy entry for an unknown
// name (with a salt derived from the name, so repeated probes see a stable salt).
func (k *Keyring) lookup(name string) *keyEntry {
	e, ok := k.names[name]
	if !ok {
		mac := hmac.New(sha256.New, k.secret)
		mac.Write([]byte("salt:" + name))
		e = &keyEntry{name: name, salt: mac.Sum(nil)[:apikey.SaltLen], iterations: apikey.DefaultIterations}
	}
	if len(e.verifiers) >= minChecks {
		return e
	}
	padded := *e
	padded.verifiers = append([]keyVerifier(nil), e.verifiers...)
	for len(padded.verifiers) < minChecks {
		padded.verifiers = append(padded.verifiers, k.decoy(name, len(padded.verifiers)))
	}
	return &padded
}

func (k *Keyring) decoy(name string, i int) keyVerifier {
	mac := hmac.New(sha256.New, k.secret)
	fmt.Fprintf(mac, "decoy:%d:%s", i, name)
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
// the name exists and of which verifier matches.
func (k *Keyring) CheckPassword(name, key string, now time.Time) bool {
	e := k.lookup(name)
	got := sha256.Sum256([]byte(key))
	match := 0
	for _, v := range e.verifiers {
		eq := subtle.ConstantTimeCompare(got[:], v.digest)
		if v.valid(now) {
			match |= eq
		}
	}
	return match == 1
}

// FindKey returns the name of the key whose secret is key (for bearer tokens that carry no
// name). It compares against every key.
func (k *Keyring) FindKey(key string, now time.Time) (string, bool) {
	got := sha256.Sum256([]byte(key))
	found := ""
	for name, e := range k.names {
		for _, v := range e.verifiers {
			if subtle.ConstantTimeCompare(got[:], v.digest) == 1 && v.valid(now) {
				found = name
			}
		}
	}
	return found, found != ""
}
