package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// TestInvalidManifestsAreRejected sends invalid pools to the real API server; each must be
// refused by the CRD's OpenAPI/CEL validation with a message naming the field.
func TestInvalidManifestsAreRejected(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	valid := func() *poolingv1alpha1.ConnectionPool { return testPool(ns, "valid") }
	if err := suite.client.Create(ctx, valid(), client.DryRunAll); err != nil {
		t.Fatalf("the base pool must be valid: %v", err)
	}

	type mutation func(p *poolingv1alpha1.ConnectionPool)
	tests := []struct {
		name      string
		mutate    mutation
		wantField string
	}{
		{"region missing", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Region = "" }, "spec.region"},
		{"region with spaces", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Region = "eu central" }, "spec.region"},
		{"upstream host missing", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.Host = "" }, "spec.upstream.host"},
		{"upstream port too high", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.Port = 70000 }, "spec.upstream.port"},
		{"upstream database missing", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.Database = "" }, "spec.upstream.database"},
		{"unknown sslMode", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.SSLMode = "sometimes" }, "spec.upstream.sslMode"},
		{"verify-full without caSecret", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.SSLMode = "verify-full" }, "spec.upstream.caSecret"},
		{"credentials Secret name missing", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.CredentialsSecret.Name = "" }, "spec.upstream.credentialsSecret.name"},
		{"negative replicas", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](-1) }, "spec.replicas"},
		{"replicas as many as the budget", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Replicas = ptr.To[int32](20)
			p.Spec.Pool.MaxUpstreamConnections = 20
		}, "spec.replicas"},
		{"replicas above the default budget", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](30) }, "spec.replicas"},
		{"unknown pool mode", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Pool.Mode = "statement" }, "spec.pool.mode"},
		{"zero upstream budget", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Pool.MaxUpstreamConnections = -5 }, "spec.pool.maxUpstreamConnections"},
		{"malformed duration", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Pool.IdleTransactionTimeout = &metav1.Duration{Duration: -time.Second}
		}, "spec.pool.idleTransactionTimeout"},
		{"zero query wait timeout", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Pool.QueryWaitTimeout = &metav1.Duration{}
		}, "spec.pool.queryWaitTimeout"},
		{"no API keys", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys = nil }, "spec.apiKeys"},
		{"key name not a DNS label", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Name = "Bad_Name" }, "spec.apiKeys[0].name"},
		{"duplicate key names", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[1].Name = "default" }, "spec.apiKeys[1]"},
		{"key name taken by the config Secret", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Name = "pooler-config" }, "spec.apiKeys[0].name"},
		{"negative rotation", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Rotation = -1 }, "spec.apiKeys[0].rotation"},
		{"TLS Secret mode without secretName", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.TLS.Mode = poolingv1alpha1.TLSSecret }, "spec.tls.secretName"},
		{"secretName with Generated TLS", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.TLS.SecretName = "mine" }, "spec.tls.secretName"},
		{"unknown TLS mode", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.TLS.Mode = "Optional" }, "spec.tls.mode"},
		{"ExternalName service", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Service.Type = corev1.ServiceTypeExternalName }, "spec.service.type"},
		{"source ranges without LoadBalancer", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Service.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
		}, "spec.service.loadBalancerSourceRanges"},
		{"external host not a DNS name", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Service.ExternalHost = "https://db" }, "spec.service.externalHost"},
		{"unknown placement", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Placement.RegionAffinity = "Sometimes" }, "spec.placement.regionAffinity"},
		{"pool name too long for its Service", func(p *poolingv1alpha1.ConnectionPool) {
			p.Name = strings.Repeat("a", 53)
		}, "metadata.name"},
	}
	if len(tests) < 15 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid()
			tt.mutate(p)
			err := suite.client.Create(ctx, p, client.DryRunAll)
			if err == nil {
				t.Fatal("accepted")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("not a validation error: %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("message does not name %s: %v", tt.wantField, err)
			}
		})
	}

	// Manifests a typed client cannot express: wrong types and unknown enum spellings in YAML.
	raw := []struct {
		name      string
		set       func(u *unstructured.Unstructured)
		wantField string
	}{
		{"replicas as a string", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "two", "spec", "replicas")
		}, "spec.replicas"},
		{"duration without unit", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "30", "spec", "pool", "queryWaitTimeout")
		}, "spec.pool.queryWaitTimeout"},
	}
	for _, tt := range raw {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			obj, err := runtimeToUnstructured(valid())
			if err != nil {
				t.Fatal(err)
			}
			u.Object = obj
			tt.set(u)
			err = suite.client.Create(ctx, u, client.DryRunAll)
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("want a rejection naming %s, got %v", tt.wantField, err)
			}
		})
	}

	// Transition rules: region is immutable, rotation only increases.
	p := valid()
	p.Spec.APIKeys[0].Rotation = 2
	if err := suite.client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		mutate    mutation
		wantField string
	}{
		{"region changed", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Region = "us-east-1" }, "spec.region"},
		{"rotation decreased", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Rotation = 1 }, "spec.apiKeys[0].rotation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur := getPool(t, ns, "valid")
			tt.mutate(cur)
			err := suite.client.Update(ctx, cur, client.DryRunAll)
			if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("want a rejection naming %s, got %v", tt.wantField, err)
			}
		})
	}
	// Defaults are applied by the API server.
	got := getPool(t, ns, "valid")
	if got.Spec.Pool.Mode != poolingv1alpha1.PoolModeTransaction || got.Spec.TLS.Mode != poolingv1alpha1.TLSGenerated ||
		got.Spec.Pool.MaxUpstreamConnections != 20 || got.Spec.APIKeys[1].GracePeriod.Duration != time.Hour ||
		got.Spec.Upstream.CredentialsSecret.PasswordKey != "password" || !*got.Spec.HTTP.Enabled {
		t.Fatalf("defaults not applied: %+v", got.Spec)
	}
}
