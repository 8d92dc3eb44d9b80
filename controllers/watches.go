package controllers

import (
	"bytes"
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

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

// SetupWithManager registers the field index and the watches: the pools, their children
// (Owns) and the user Secrets they reference (through the index).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &poolingv1alpha1.ConnectionPool{}, indexReferencedSecrets,
		func(o client.Object) []string { return referencedSecrets(o.(*poolingv1alpha1.ConnectionPool)) }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&poolingv1alpha1.ConnectionPool{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.poolsReferencingSecret),
			// Only the data of a referenced Secret matters; metadata-only updates (labels,
			// annotations, managedFields) would just cost reconciles.
			builder.WithPredicates(secretDataChanged())).
		Named("connectionpool").
		// The upstream check can wait for its timeout; other pools should not queue behind it.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
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

// secretDataChanged passes creates, deletes and updates that change a Secret's data.
func secretDataChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Secret)
			n, ok2 := e.ObjectNew.(*corev1.Secret)
			if !ok1 || !ok2 || len(o.Data) != len(n.Data) {
				return true
			}
			for k, v := range n.Data {
				if !bytes.Equal(o.Data[k], v) {
					return true
				}
			}
			return false
		},
	}
}
