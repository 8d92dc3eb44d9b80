package controllers

import (
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// samplePool is the pool the unit tests start from (as the API server would default it).
func samplePool() *poolingv1alpha1.ConnectionPool {
	return &poolingv1alpha1.ConnectionPool{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "apps", Generation: 3, UID: "uid-shop"},
		Spec: poolingv1alpha1.ConnectionPoolSpec{
			Region: "eu-central-1",
			Upstream: poolingv1alpha1.Upstream{
				Host: "shop-db.example.internal", Port: 5432, Database: "shop", SSLMode: "require",
				CredentialsSecret: poolingv1alpha1.CredentialsSecretRef{Name: "shop-db"},
			},
			Replicas: ptr.To[int32](2),
			Pool:     poolingv1alpha1.PoolSettings{MaxUpstreamConnections: 20},
			APIKeys:  []poolingv1alpha1.APIKey{{Name: "default"}, {Name: "ci"}},
		},
	}
}

// countingKeys is a deterministic keySource: key-1, key-2, ... and a fixed salt.
func countingKeys() keySource {
	var n atomic.Int64
	return keySource{
		NewKey:  func() (string, error) { return fmt.Sprintf("ep_test-key-%d", n.Add(1)), nil },
		NewSalt: func() ([]byte, error) { return []byte("0123456789abcdef"), nil },
	}
}
