package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// indexReferencedSecrets indexes pools by the names of the user Secrets they reference
// (credentials, upstream CA, TLS), so a change to one of them finds its pools.
const indexReferencedSecrets = "spec.referencedSecrets"

// referencedSecrets are the user Secrets a pool reads.
func referencedSecrets(pool *poolingv1alpha1.ConnectionPool) []string {
	names := []string{pool.Spec.Upstream.CredentialsSecret.Name}
	if ca := pool.Spec.Upstream.CASecret; ca != nil {
		names = append(names, ca.Name)
	}
	if pool.TLSMode() == poolingv1alpha1.TLSSecret && pool.Spec.TLS.SecretName != "" {
		names = append(names, pool.Spec.TLS.SecretName)
	}
	return names
}

// CacheOptions are the manager's cache settings the reconciler relies on: only the namespaces
// watched (empty: all) and, of Secrets, only those the operator owns (label managed-by), so the
// manager never holds the cluster's Secrets in memory.
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{labelManagedBy: managedBy})},
	}}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, n := range namespaces {
			opts.DefaultNamespaces[n] = cache.Config{}
		}
	}
	return opts
}

// SetupWithManager registers the field index and the watches: the pools, their children
// (Owns, from the manager's cache) and the user Secrets they reference (through the index, from
// a metadata-only watch of its own: the manager's cache holds only the operator's Secrets, and
// a referenced Secret's data is read from the API server when a pool is reconciled).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if err := mgr.Add(r.checks); err != nil {
		return err
	}
	secretMeta, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: CacheOptions(r.Namespaces).DefaultNamespaces,
		// Only names and labels are kept: managedFields can be large and are never read.
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return fmt.Errorf("metadata cache for referenced Secrets: %w", err)
	}
	if err := mgr.Add(secretMeta); err != nil {
		return err
	}
	userSecret := &metav1.PartialObjectMetadata{}
	userSecret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &poolingv1alpha1.ConnectionPool{}, indexReferencedSecrets,
		func(o client.Object) []string { return referencedSecrets(o.(*poolingv1alpha1.ConnectionPool)) }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		// The pool's own status writes are not news: only spec (generation), label and
		// annotation changes, creations and deletions reconcile it.
		For(&poolingv1alpha1.ConnectionPool{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// Any change of a referenced Secret bumps its resourceVersion; the metadata watch sees
		// that without holding the data.
		WatchesRawSource(source.Kind(secretMeta, userSecret,
			handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
				return r.poolsReferencingSecret(ctx, o)
			}))).
		// A changed reachability result (upstream_checks.go) reconciles its pool.
		WatchesRawSource(source.Channel(r.checks.changed, &handler.EnqueueRequestForObject{})).
		Named("connectionpool").
		// Reconciles never wait for the upstream; their time goes to API round trips, which
		// several workers overlap (200 pools: docs/operator.md).
		WithOptions(controller.Options{MaxConcurrentReconciles: 16}).
		Complete(r)
}

// poolsReferencingSecret maps a Secret to the pools of its namespace that reference it.
func (r *Reconciler) poolsReferencingSecret(ctx context.Context, o client.Object) []reconcile.Request {
	pools := &poolingv1alpha1.ConnectionPoolList{}
	if err := r.Client.List(ctx, pools, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{indexReferencedSecrets: o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(pools.Items))
	for _, p := range pools.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return reqs
}
