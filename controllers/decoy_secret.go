package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// decoySecret is the pool's auth.decoySecret: the one already in its config Secret, or a new
// random one the first time. Every replica reads it from the same Secret, so all of them answer
// the same SCRAM salt for a key name that does not exist (as they do for one that does); it
// must stay the same across renders.
func (r *Reconciler) decoySecret(ctx context.Context, pool *poolingv1alpha1.ConnectionPool) (string, error) {
	existing := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: configSecretName(pool)}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("get config Secret: %w", err)
	}
	if err == nil {
		if s, ok := decoySecretFrom(existing, pool); ok {
			return s, nil
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate decoy secret: %w", err)
	}
	return base64.RawStdEncoding.EncodeToString(b), nil
}

// decoySecretKey holds the decoy secret in the config Secret next to the config file, so a
// hand edit of the file does not lose it (the operator restores the file as it was).
const decoySecretKey = "decoy-secret"

// decoySecretFrom reads the decoy secret out of the pool's own config Secret.
func decoySecretFrom(existing *corev1.Secret, pool *poolingv1alpha1.ConnectionPool) (string, bool) {
	if !metav1.IsControlledBy(existing, pool) {
		return "", false // not ours: never take secrets from a foreign object
	}
	s := string(existing.Data[decoySecretKey])
	return s, s != ""
}
