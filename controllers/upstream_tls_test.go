package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/certs"
)

// TestWrongUpstreamCAReportsTLSFailed: a pool whose caSecret holds another CA than the one that
// signed the TLS-only PostgreSQL's certificate reports UpstreamReachable=False with reason
// TLSFailed, naming the cause; the condition never carries the password. Replacing the CA
// Secret with the right one heals it.
func TestWrongUpstreamCAReportsTLSFailed(t *testing.T) {
	pg := suite.tlsPG
	otherCA, _, err := certs.NewCA("not-the-database's", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	ca := verifyFullPool(t, ns, "wrongca", otherCA)
	p := waitCondition(t, ns, "wrongca", poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionFalse, ReasonTLSFailed)
	c := condition(p, poolingv1alpha1.ConditionUpstreamReachable)
	if !strings.Contains(c.Message, "unknown authority") || strings.Contains(c.Message, pg.Password) {
		t.Fatalf("UpstreamReachable message: %q", c.Message)
	}

	// The right CA heals the pool.
	ca.Data = map[string][]byte{"ca.crt": pg.CACert}
	if err := suite.client.Update(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "wrongca", poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionTrue, ReasonConnected)
}

// verifyFullPool creates a pool in ns with sslMode verify-full towards suite.tlsPG (host
// "localhost", which its certificate names), its credentials Secret, and a CA Secret holding
// caPEM, which it returns.
func verifyFullPool(t *testing.T, ns, name string, caPEM []byte) *corev1.Secret {
	t.Helper()
	pg := suite.tlsPG
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-db-ca", Namespace: ns}, Data: map[string][]byte{"ca.crt": caPEM}}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-db", Namespace: ns},
		StringData: map[string]string{"username": pg.User, "password": pg.Password}}
	pool := testPool(ns, name)
	pool.Spec.Upstream = poolingv1alpha1.Upstream{Host: "localhost", Port: int32(pg.Port), Database: "postgres",
		SSLMode: "verify-full", CASecret: &poolingv1alpha1.SecretKeyRef{Name: ca.Name},
		CredentialsSecret: poolingv1alpha1.CredentialsSecretRef{Name: creds.Name}}
	for _, o := range []client.Object{ca, creds, pool} {
		if err := suite.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}
