package localkubelet

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// collectGarbage deletes objects all of whose owners are gone, as kube-controller-manager's
// garbage collector does (envtest runs no controllers). Only the kinds a pooler Deployment
// brings along are looked at.
func (k *Kubelet) collectGarbage(ctx context.Context) {
	lists := []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.SecretList{},
		&corev1.ConfigMapList{}, &policyv1.PodDisruptionBudgetList{}}
	exists := map[types.UID]bool{} // owner lookups of this pass
	for _, list := range lists {
		if err := k.cache.List(ctx, list); err != nil {
			continue
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			continue
		}
		for _, item := range items {
			obj, ok := item.(client.Object)
			if !ok || len(obj.GetOwnerReferences()) == 0 || obj.GetDeletionTimestamp() != nil {
				continue
			}
			if k.anyOwnerExists(ctx, obj, exists) {
				continue
			}
			uid := obj.GetUID()
			err := k.client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground),
				client.Preconditions{UID: &uid})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				k.log.Error("garbage collect", "object", obj.GetNamespace()+"/"+obj.GetName(), "err", err)
				continue
			}
			k.log.Info("garbage collected: owner gone", "kind", kindOf(list), "object",
				obj.GetNamespace()+"/"+obj.GetName(), "owner", obj.GetOwnerReferences()[0].Kind+"/"+obj.GetOwnerReferences()[0].Name)
		}
	}
}

func kindOf(list client.ObjectList) string {
	switch list.(type) {
	case *appsv1.DeploymentList:
		return "Deployment"
	case *corev1.ServiceList:
		return "Service"
	case *corev1.SecretList:
		return "Secret"
	case *corev1.ConfigMapList:
		return "ConfigMap"
	case *policyv1.PodDisruptionBudgetList:
		return "PodDisruptionBudget"
	}
	return "object"
}

// anyOwnerExists reads each owner from the API server (not a cache: a stale cache must never
// get a live object deleted). An owner whose kind cannot be resolved counts as existing.
func (k *Kubelet) anyOwnerExists(ctx context.Context, obj client.Object, seen map[types.UID]bool) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if known, ok := seen[ref.UID]; ok {
			if known {
				return true
			}
			continue
		}
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil {
			return true
		}
		owner := &metav1.PartialObjectMetadata{}
		owner.SetGroupVersionKind(gv.WithKind(ref.Kind))
		err = k.client.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: ref.Name}, owner)
		switch {
		case err == nil && owner.GetUID() == ref.UID:
			seen[ref.UID] = true
			return true
		case err == nil || apierrors.IsNotFound(err):
			seen[ref.UID] = false
		default:
			return true // unknown kind, API trouble: keep the object
		}
	}
	return false
}
