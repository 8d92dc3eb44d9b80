// Package apikey generates edgepool API keys and the verifiers the pooler stores for them.
//
// A key is 256 bits from crypto/rand with a readable prefix, so secret scanners can spot a
// leaked one. The pooler never stores a key: it stores a SCRAM-SHA-256 verifier (for
// wire-protocol SCRAM) and a SHA-256 digest (for HTTP bearer tokens and cleartext passwords
// over TLS). Both are safe to keep in a config file because the keys are high-entropy.
package apikey

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgepool/edgepool/pooler/config"
)

// Prefix starts every generated key.
const Prefix = "ep_"

// DefaultIterations is the PBKDF2 iteration count of new SCRAM verifiers (PostgreSQL's default).
const DefaultIterations = 4096

// SaltLen is the length in bytes of a generated SCRAM salt.
const SaltLen = 16

// Generate returns a new API key: Prefix followed by 256 random bits, base64url without padding.
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate api key: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// NewSalt returns a random SCRAM salt.
func NewSalt() ([]byte, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("generate salt: %w", err)
	}
	return salt, nil
}

// Digest is the hex SHA-256 of a key, as stored for bearer-token and cleartext checks.
func Digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Fingerprint is a short, non-secret identifier of a key (the first 8 hex digits of its digest),
// shown in status so people can tell keys apart.
func Fingerprint(key string) string {
	return Digest(key)[:8]
}

// MatchDigest reports, in constant time, whether key hashes to the hex digest want.
func MatchDigest(key, want string) bool {
	got := sha256.Sum256([]byte(key))
	w, err := hex.DecodeString(want)
	if err != nil || len(w) != len(got) {
		// Still spend the comparison so a malformed entry costs the same.
		subtle.ConstantTimeCompare(got[:], got[:])
		return false
	}
	return subtle.ConstantTimeCompare(got[:], w) == 1
}

// SCRAMVerifier is a parsed SCRAM-SHA-256 verifier in PostgreSQL's format
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64 fields).
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// NewSCRAMVerifier derives the verifier of key with the given salt and iteration count.
// All keys that are valid for one key name at once must share salt and iterations, because
// SCRAM sends the salt before the client proves anything.
func NewSCRAMVerifier(key string, salt []byte, iterations int) (SCRAMVerifier, error) {
	if iterations < 1 {
		return SCRAMVerifier{}, errors.New("scram: iterations must be positive")
	}
	salted, err := pbkdf2.Key(sha256.New, key, salt, iterations, sha256.Size)
	if err != nil {
		return SCRAMVerifier{}, fmt.Errorf("scram: derive salted password: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return SCRAMVerifier{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}, nil
}

// String renders the verifier in PostgreSQL's format.
func (v SCRAMVerifier) String() string {
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", v.Iterations, enc(v.Salt), enc(v.StoredKey), enc(v.ServerKey))
}

// ParseSCRAMVerifier parses PostgreSQL's verifier format.
func ParseSCRAMVerifier(s string) (SCRAMVerifier, error) {
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return SCRAMVerifier{}, errors.New("scram verifier: missing SCRAM-SHA-256$ prefix")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return SCRAMVerifier{}, errors.New("scram verifier: missing keys")
	}
	iterStr, saltStr, ok := strings.Cut(params, ":")
	if !ok {
		return SCRAMVerifier{}, errors.New("scram verifier: missing salt")
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok {
		return SCRAMVerifier{}, errors.New("scram verifier: missing server key")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 {
		return SCRAMVerifier{}, errors.New("scram verifier: bad iteration count")
	}
	var v SCRAMVerifier
	v.Iterations = iter
	dec := base64.StdEncoding.DecodeString
	if v.Salt, err = dec(saltStr); err != nil || len(v.Salt) == 0 {
		return SCRAMVerifier{}, errors.New("scram verifier: bad salt")
	}
	if v.StoredKey, err = dec(storedStr); err != nil || len(v.StoredKey) != sha256.Size {
		return SCRAMVerifier{}, errors.New("scram verifier: bad stored key")
	}
	if v.ServerKey, err = dec(serverStr); err != nil || len(v.ServerKey) != sha256.Size {
		return SCRAMVerifier{}, errors.New("scram verifier: bad server key")
	}
	return v, nil
}

// VerifyClientProof checks a SCRAM ClientProof against the verifier in constant time
// (RFC 5802: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey).
func (v SCRAMVerifier) VerifyClientProof(authMessage, proof []byte) bool {
	if len(proof) != sha256.Size {
		return false
	}
	sig := hmacSHA256(v.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for i := range clientKey {
		clientKey[i] = proof[i] ^ sig[i]
	}
	got := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(got[:], v.StoredKey) == 1
}

// ServerSignature is HMAC(ServerKey, AuthMessage), sent in the server-final-message.
func (v SCRAMVerifier) ServerSignature(authMessage []byte) []byte {
	return hmacSHA256(v.ServerKey, authMessage)
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// ConfigVerifier is what the pooler config stores for key: its SCRAM verifier with salt and
// iterations (keys of one name share them), its digest and its fingerprint.
func ConfigVerifier(key string, salt []byte, iterations int) (config.Verifier, error) {
	scram, err := NewSCRAMVerifier(key, salt, iterations)
	if err != nil {
		return config.Verifier{}, err
	}
	return config.Verifier{SCRAM: scram.String(), SHA256: Digest(key), Fingerprint: Fingerprint(key)}, nil
}

// NewConfigKey generates a key for name with a fresh salt and returns its config entry and the
// key itself (what `edgepool keygen` prints).
func NewConfigKey(name string) (config.Key, string, error) {
	key, err := Generate()
	if err != nil {
		return config.Key{}, "", err
	}
	salt, err := NewSalt()
	if err != nil {
		return config.Key{}, "", err
	}
	v, err := ConfigVerifier(key, salt, DefaultIterations)
	if err != nil {
		return config.Key{}, "", err
	}
	return config.Key{Name: name, Verifiers: []config.Verifier{v}}, key, nil
}
