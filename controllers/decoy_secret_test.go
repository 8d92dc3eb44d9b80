package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/edgepool/edgepool/pooler/config"
)

func TestDecoySecretFrom(t *testing.T) {
	pool := samplePool()
	pool.UID = types.UID("pool-uid")
	owned := metav1.OwnerReference{APIVersion: "pooling.edgepool.dev/v1alpha1", Kind: "ConnectionPool", Name: pool.Name,
		UID: pool.UID, Controller: ptr.To(true)}
	secret := func(owner *metav1.OwnerReference, decoy string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: configSecretName(pool), Namespace: pool.Namespace},
			Data: map[string][]byte{config.FileName: []byte(`{"keys":[{"name":"intruder"}]}`)}}
		if decoy != "" {
			s.Data[decoySecretKey] = []byte(decoy)
		}
		if owner != nil {
			s.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		return s
	}
	foreign := owned
	foreign.UID = "someone-else"
	for _, tt := range []struct {
		name   string
		secret *corev1.Secret
		want   string
		wantOK bool
	}{
		{"kept from our config Secret, whatever the config file says", secret(&owned, "c2VjcmV0"), "c2VjcmV0", true},
		{"config Secret without one (older operator)", secret(&owned, ""), "", false},
		{"foreign Secret with the same name", secret(&foreign, "c2VjcmV0"), "", false},
		{"no owner", secret(nil, "c2VjcmV0"), "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := decoySecretFrom(tt.secret, pool)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("got %q %v, want %q %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
