package controllers

import (
	"bytes"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/apikey"
)

// secretsFor renders the app Secrets of a plan, as the API server would store them.
func secretsFor(pool *poolingv1alpha1.ConnectionPool, keys []keyMaterial) map[string]*corev1.Secret {
	out := map[string]*corev1.Secret{}
	for _, k := range keys {
		out[k.Name] = appSecret(pool, k, nil)
	}
	return out
}

func TestPlanKeysLifecycle(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	src := countingKeys()
	pool := samplePool()

	first, err := planKeys(pool, nil, t0, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].Key != "ep_test-key-1" || first[1].Key != "ep_test-key-2" {
		t.Fatalf("fresh keys = %+v", first)
	}

	tests := []struct {
		name   string
		mutate func(p *poolingv1alpha1.ConnectionPool)
		at     time.Time
		check  func(t *testing.T, got []keyMaterial)
	}{
		{
			name: "unchanged spec keeps keys", at: t0.Add(time.Hour),
			check: func(t *testing.T, got []keyMaterial) {
				if got[0].Key != first[0].Key || got[1].Key != first[1].Key || got[0].Previous != nil {
					t.Fatalf("keys changed: %+v", got)
				}
				if !got[0].CreatedAt.Equal(t0) {
					t.Fatalf("createdAt = %v", got[0].CreatedAt)
				}
			},
		},
		{
			name: "rotation issues a new key and keeps the old verifier for the grace period", at: t0.Add(time.Hour),
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.APIKeys[1].Rotation = 1
				p.Spec.APIKeys[1].GracePeriod = &metav1.Duration{Duration: 10 * time.Minute}
			},
			check: func(t *testing.T, got []keyMaterial) {
				ci := got[1]
				if ci.Key == first[1].Key || ci.Rotation != 1 || ci.Previous == nil {
					t.Fatalf("not rotated: %+v", ci)
				}
				if ci.Previous.Fingerprint != apikey.Fingerprint(first[1].Key) {
					t.Fatal("previous verifier is not the old key's")
				}
				if want := t0.Add(time.Hour + 10*time.Minute); !ci.Previous.NotAfter.Equal(want) {
					t.Fatalf("NotAfter = %v, want %v", ci.Previous.NotAfter, want)
				}
				if !bytes.Equal(ci.Salt, first[1].Salt) || ci.Iterations != first[1].Iterations {
					t.Fatal("old and new key must share salt and iterations")
				}
				if got[0].Key != first[0].Key {
					t.Fatal("rotating ci changed default")
				}
			},
		},
		{
			name: "disabled key is marked, not regenerated", at: t0,
			mutate: func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Disabled = true },
			check: func(t *testing.T, got []keyMaterial) {
				if !got[0].Disabled || got[0].Key != first[0].Key {
					t.Fatalf("got %+v", got[0])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			if tt.mutate != nil {
				tt.mutate(p)
			}
			got, err := planKeys(p, secretsFor(pool, first), tt.at, src)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func TestPlanKeysGracePeriodEnds(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	src := countingKeys()
	pool := samplePool()
	first, _ := planKeys(pool, nil, t0, src)

	pool.Spec.APIKeys[0].Rotation = 1
	pool.Spec.APIKeys[0].GracePeriod = &metav1.Duration{Duration: time.Minute}
	rotated, _ := planKeys(pool, secretsFor(pool, first), t0, src)
	if rotated[0].Previous == nil {
		t.Fatal("no previous key after rotation")
	}
	if at, ok := nextKeyExpiry(rotated); !ok || !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next expiry = %v %v", at, ok)
	}

	// State read back from the Secret (operator restart) still has the previous key...
	during, _ := planKeys(pool, secretsFor(pool, rotated), t0.Add(59*time.Second), src)
	if during[0].Previous == nil || during[0].Key != rotated[0].Key {
		t.Fatalf("lost rotation state across a restart: %+v", during[0])
	}
	// ...and drops it once the grace period is over, without rotating again.
	after, _ := planKeys(pool, secretsFor(pool, rotated), t0.Add(time.Minute), src)
	if after[0].Previous != nil || after[0].Key != rotated[0].Key {
		t.Fatalf("after grace: %+v", after[0])
	}
	if _, ok := nextKeyExpiry(after); ok {
		t.Fatal("expiry reported after grace period")
	}
}

func TestKeyFromSecretRejectsIncompleteState(t *testing.T) {
	pool := samplePool()
	keys, _ := planKeys(pool, nil, time.Now(), countingKeys())
	good := appSecret(pool, keys[0], nil)
	tests := []struct {
		name   string
		mutate func(s *corev1.Secret)
		ok     bool
	}{
		{"complete", func(*corev1.Secret) {}, true},
		{"no key", func(s *corev1.Secret) { delete(s.Data, appSecretAPIKey) }, false},
		{"bad salt", func(s *corev1.Secret) { s.Annotations[annotationSCRAMSalt] = "!!" }, false},
		{"bad iterations", func(s *corev1.Secret) { s.Annotations[annotationSCRAMIters] = "0" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good.DeepCopy()
			tt.mutate(s)
			if _, ok := keyFromSecret(s); ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
		})
	}
}
