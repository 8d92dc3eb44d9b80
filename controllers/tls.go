package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/certs"
)

// ensureTLS issues or renews the generated CA and certificate (TLS mode Generated).
func (r *Reconciler) ensureTLS(ctx context.Context, st *run) error {
	pool := st.pool
	if pool.TLSMode() != poolingv1alpha1.TLSGenerated {
		return nil
	}
	existing := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: tlsSecretName(pool)}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get TLS Secret: %w", err)
	}
	var current certs.Bundle
	if err == nil && metav1.IsControlledBy(existing, pool) {
		current = bundleFromSecret(existing)
	}
	bundle, renewAt, reissued, err := certs.Ensure(current, pool.Namespace+"/"+pool.Name, serverDNSNames(pool), st.now)
	if err != nil {
		return fmt.Errorf("issue certificate: %w", err)
	}
	if _, err := r.ensureChild(ctx, pool, tlsSecret(pool, bundle)); err != nil {
		return err
	}
	if reissued {
		r.Recorder.Eventf(pool, nil, corev1.EventTypeNormal, "CertificateIssued", "IssueCertificate",
			"issued the pooler certificate in Secret %s", tlsSecretName(pool))
	}
	cert, err := certs.ParseCert(bundle.ServerCert)
	if err != nil {
		return fmt.Errorf("parse issued certificate: %w", err)
	}
	st.certSerial = cert.SerialNumber.Text(16)
	st.clientCA = bundle.CACert
	st.due(renewAt)
	return nil
}

// tlsSecret is the <pool>-tls Secret of TLS mode Generated. Only tls.crt and tls.key are
// mounted into the pods; the CA key stays in the Secret for renewals.
func tlsSecret(pool *poolingv1alpha1.ConnectionPool, b certs.Bundle) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      tlsSecretName(pool),
			Namespace: pool.Namespace,
			Labels:    childLabels(pool, componentTLS),
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       b.ServerCert,
			corev1.TLSPrivateKeyKey: b.ServerKey,
			"ca.crt":                b.CACert,
			"ca.key":                b.CAKey,
		},
	}
}

// bundleFromSecret reads a Generated TLS Secret back (empty parts when absent).
func bundleFromSecret(s *corev1.Secret) certs.Bundle {
	if s == nil {
		return certs.Bundle{}
	}
	return certs.Bundle{
		CACert:     s.Data["ca.crt"],
		CAKey:      s.Data["ca.key"],
		ServerCert: s.Data[corev1.TLSCertKey],
		ServerKey:  s.Data[corev1.TLSPrivateKeyKey],
	}
}

// serverDNSNames are the names the generated certificate covers, in a fixed order.
func serverDNSNames(pool *poolingv1alpha1.ConnectionPool) []string {
	svc := serviceName(pool)
	names := []string{
		svc,
		svc + "." + pool.Namespace,
		svc + "." + pool.Namespace + ".svc",
		svc + "." + pool.Namespace + ".svc.cluster.local",
	}
	if ext := pool.Spec.Service.ExternalHost; ext != "" {
		names = append(names, ext)
	}
	return names
}
