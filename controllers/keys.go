package controllers

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// Rotation state lives on each app Secret, so it survives operator restarts. Only the current
// key is kept in plaintext (data API_KEY); the previous key survives its rotation as a verifier
// only, which is all the pooler needs.
const (
	annotationKeyRotation  = "pooling.edgepool.dev/key-rotation"
	annotationKeyCreatedAt = "pooling.edgepool.dev/key-created-at"
	annotationSCRAMSalt    = "pooling.edgepool.dev/scram-salt"
	annotationSCRAMIters   = "pooling.edgepool.dev/scram-iterations"
	annotationPreviousKey  = "pooling.edgepool.dev/previous-key-verifier"
	appSecretAPIKey        = "API_KEY"
)

// keyMaterial is everything known about one API key name: the current key, its SCRAM
// parameters (shared with the previous key, since SCRAM sends the salt first) and the previous
// key's verifier while it is in its grace period.
type keyMaterial struct {
	Name       string
	Key        string
	Salt       []byte
	Iterations int
	Rotation   int32
	CreatedAt  time.Time
	Previous   *config.Verifier
	Disabled   bool
}

// keySource makes new keys and salts; tests pin it to make plans deterministic.
type keySource struct {
	NewKey  func() (string, error)
	NewSalt func() ([]byte, error)
}

var randomKeys = keySource{NewKey: apikey.Generate, NewSalt: apikey.NewSalt}

// planKeys decides each spec key's material from its existing app Secret (nil when absent):
// keep what exists, generate what is missing, rotate when spec.rotation moved past the recorded
// one, and forget a previous key whose grace period is over. now is the reconcile time.
func planKeys(pool *poolingv1alpha1.ConnectionPool, existing map[string]*corev1.Secret, now time.Time, src keySource) ([]keyMaterial, error) {
	out := make([]keyMaterial, 0, len(pool.Spec.APIKeys))
	for _, spec := range pool.Spec.APIKeys {
		km, ok := keyFromSecret(existing[spec.Name])
		if !ok {
			fresh, err := newKeyMaterial(spec, now, src, nil, 0)
			if err != nil {
				return nil, err
			}
			km = fresh
		} else if spec.Rotation > km.Rotation {
			prev, err := verifierFor(km.Key, km.Salt, km.Iterations)
			if err != nil {
				return nil, err
			}
			notAfter := now.Add(spec.GracePeriodOrDefault())
			prev.NotAfter = &notAfter
			rotated, err := newKeyMaterial(spec, now, src, km.Salt, km.Iterations)
			if err != nil {
				return nil, err
			}
			rotated.Previous = &prev
			km = rotated
		}
		if km.Previous != nil && km.Previous.NotAfter != nil && !now.Before(*km.Previous.NotAfter) {
			km.Previous = nil
		}
		km.Name = spec.Name
		km.Disabled = spec.Disabled
		out = append(out, km)
	}
	return out, nil
}

func newKeyMaterial(spec poolingv1alpha1.APIKey, now time.Time, src keySource, salt []byte, iters int) (keyMaterial, error) {
	key, err := src.NewKey()
	if err != nil {
		return keyMaterial{}, fmt.Errorf("api key %s: %w", spec.Name, err)
	}
	if salt == nil {
		if salt, err = src.NewSalt(); err != nil {
			return keyMaterial{}, fmt.Errorf("api key %s: %w", spec.Name, err)
		}
		iters = apikey.DefaultIterations
	}
	return keyMaterial{Name: spec.Name, Key: key, Salt: salt, Iterations: iters, Rotation: spec.Rotation, CreatedAt: now}, nil
}

// keyFromSecret reads the material back from an app Secret written by appSecret. ok is false
// when the Secret is absent or unusable (then a fresh key is issued).
func keyFromSecret(s *corev1.Secret) (keyMaterial, bool) {
	if s == nil || len(s.Data[appSecretAPIKey]) == 0 {
		return keyMaterial{}, false
	}
	a := s.Annotations
	salt, err := base64.StdEncoding.DecodeString(a[annotationSCRAMSalt])
	if err != nil || len(salt) == 0 {
		return keyMaterial{}, false
	}
	iters, err := strconv.Atoi(a[annotationSCRAMIters])
	if err != nil || iters < 1 {
		return keyMaterial{}, false
	}
	km := keyMaterial{Key: string(s.Data[appSecretAPIKey]), Salt: salt, Iterations: iters}
	if r, err := strconv.ParseInt(a[annotationKeyRotation], 10, 32); err == nil {
		km.Rotation = int32(r)
	}
	if t, err := time.Parse(time.RFC3339, a[annotationKeyCreatedAt]); err == nil {
		km.CreatedAt = t
	}
	if raw := a[annotationPreviousKey]; raw != "" {
		var prev config.Verifier
		if err := json.Unmarshal([]byte(raw), &prev); err == nil && prev.SCRAM != "" {
			km.Previous = &prev
		}
	}
	return km, true
}

// keyAnnotations records km's state on its app Secret (the inverse of keyFromSecret).
func keyAnnotations(km keyMaterial) map[string]string {
	a := map[string]string{
		annotationKeyRotation:  strconv.Itoa(int(km.Rotation)),
		annotationKeyCreatedAt: km.CreatedAt.UTC().Format(time.RFC3339),
		annotationSCRAMSalt:    base64.StdEncoding.EncodeToString(km.Salt),
		annotationSCRAMIters:   strconv.Itoa(km.Iterations),
	}
	if km.Previous != nil {
		if raw, err := json.Marshal(km.Previous); err == nil { // strings and a time: cannot fail
			a[annotationPreviousKey] = string(raw)
		}
	}
	return a
}

// verifierFor derives what the pooler stores for key.
func verifierFor(key string, salt []byte, iters int) (config.Verifier, error) {
	// PBKDF2 with thousands of iterations is the costliest step of a reconcile, and every
	// reconcile renders the same verifiers: remember them (by a digest of their inputs).
	id := sha256.Sum256([]byte(fmt.Sprintf("%d:%s:%x:%d", len(key), key, salt, iters)))
	if v, ok := verifiers.Load(id); ok {
		return v.(config.Verifier), nil
	}
	v, err := apikey.ConfigVerifier(key, salt, iters)
	if err != nil {
		return config.Verifier{}, err
	}
	if verifierCount.Add(1) > maxRememberedVerifiers {
		verifiers.Clear() // rotations retire keys; start over rather than grow without bound
		verifierCount.Store(1)
	}
	verifiers.Store(id, v)
	return v, nil
}

// verifiers remembers computed verifiers (verifierFor); a few hundred bytes each.
var (
	verifiers     sync.Map
	verifierCount atomic.Int64
)

const maxRememberedVerifiers = 100_000

// nextKeyExpiry is the earliest end of a grace period, when the config must drop a verifier.
func nextKeyExpiry(keys []keyMaterial) (time.Time, bool) {
	var next time.Time
	for _, k := range keys {
		if k.Previous == nil || k.Previous.NotAfter == nil {
			continue
		}
		if next.IsZero() || k.Previous.NotAfter.Before(next) {
			next = *k.Previous.NotAfter
		}
	}
	return next, !next.IsZero()
}
