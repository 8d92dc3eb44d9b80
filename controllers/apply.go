package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// fieldOwner names the operator in managedFields.
const fieldOwner = client.FieldOwner("edgepool-operator")

// errNameConflict means an object with a child's name exists and the pool does not control it.
type errNameConflict struct {
	Kind, Name string
}

func (e *errNameConflict) Error() string {
	return fmt.Sprintf("%s %s already exists and is not owned by this ConnectionPool", e.Kind, e.Name)
}

// desiredHash hashes what the operator wants of a child: labels, annotations and payload.
// It is stamped on the child; an equal hash on the live object means nothing to write.
func desiredHash(obj client.Object) string {
	var payload any
	switch o := obj.(type) {
	case *appsv1.Deployment:
		payload = o.Spec
	case *corev1.Service:
		payload = o.Spec
	case *corev1.Secret:
		payload = struct {
			Type corev1.SecretType
			Data map[string][]byte
		}{o.Type, o.Data}
	case *policyv1.PodDisruptionBudget:
		payload = o.Spec
	default:
		panic(fmt.Sprintf("desiredHash: unsupported child type %T", obj))
	}
	annotations := maps.Clone(obj.GetAnnotations())
	delete(annotations, annotationDesiredHash)
	// encoding/json sorts map keys, so equal objects hash equally.
	raw, err := json.Marshal(struct {
		Labels, Annotations map[string]string
		Payload             any
	}{obj.GetLabels(), annotations, payload})
	if err != nil {
		panic(fmt.Sprintf("desiredHash: %v", err)) // only plain API types reach here
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:12])
}

// copyDesired moves the operator-owned parts of desired onto the live object, leaving fields
// other actors own (Service clusterIP and nodePorts, foreign labels and annotations) alone.
func copyDesired(live, desired client.Object) {
	labels := live.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, desired.GetLabels())
	live.SetLabels(labels)
	annotations := live.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(annotations, desired.GetAnnotations())
	live.SetAnnotations(annotations)

	switch l := live.(type) {
	case *appsv1.Deployment:
		l.Spec = desired.(*appsv1.Deployment).Spec
	case *corev1.Service:
		d := desired.(*corev1.Service)
		l.Spec.Type = d.Spec.Type
		l.Spec.Selector = d.Spec.Selector
		l.Spec.LoadBalancerSourceRanges = d.Spec.LoadBalancerSourceRanges
		nodePorts := map[string]int32{}
		for _, p := range l.Spec.Ports {
			nodePorts[p.Name] = p.NodePort
		}
		l.Spec.Ports = append([]corev1.ServicePort(nil), d.Spec.Ports...)
		if d.Spec.Type != corev1.ServiceTypeClusterIP {
			for i := range l.Spec.Ports {
				l.Spec.Ports[i].NodePort = nodePorts[l.Spec.Ports[i].Name]
			}
		}
	case *corev1.Secret:
		d := desired.(*corev1.Secret)
		l.Data = d.Data
		l.StringData = nil
		// Keys the operator once wrote but no longer wants (e.g. the previous-key verifier after
		// its grace period) are removed.
		for _, k := range ownedAnnotationKeys {
			if _, ok := d.Annotations[k]; !ok {
				delete(annotations, k)
			}
		}
	case *policyv1.PodDisruptionBudget:
		l.Spec = desired.(*policyv1.PodDisruptionBudget).Spec
	}
}

// ownedAnnotationKeys are annotations the operator may drop from a child.
var ownedAnnotationKeys = []string{annotationPreviousKey}

// ensureChild creates desired when absent and updates it when its desired hash changed (or, for
// Secrets, when someone edited the data). It never touches an object the pool does not control:
// that is reported as *errNameConflict. It returns the live object after the call.
func ensureChild(ctx context.Context, c client.Client, pool *poolingv1alpha1.ConnectionPool, desired client.Object) (client.Object, error) {
	if err := controllerutil.SetControllerReference(pool, desired, c.Scheme()); err != nil {
		return nil, fmt.Errorf("set owner of %s: %w", desired.GetName(), err)
	}
	hash := desiredHash(desired)
	annotations := desired.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[annotationDesiredHash] = hash
	desired.SetAnnotations(annotations)
	kind := kindOf(desired)

	live := desired.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), live)
	switch {
	case apierrors.IsNotFound(err):
		// AlreadyExists means the cache lags behind: the error retries and the next reconcile
		// sees the object (and, for app Secrets, keeps its key instead of a new one).
		if err := c.Create(ctx, desired, fieldOwner); err != nil {
			return nil, fmt.Errorf("create %s %s: %w", kind, desired.GetName(), err)
		}
		return desired, nil
	case err != nil:
		return nil, fmt.Errorf("get %s %s: %w", kind, desired.GetName(), err)
	}
	if !metav1.IsControlledBy(live, pool) {
		return nil, &errNameConflict{Kind: kind, Name: desired.GetName()}
	}
	if live.GetAnnotations()[annotationDesiredHash] == hash && !secretDataDrifted(live, desired) {
		return live, nil
	}
	copyDesired(live, desired)
	if err := c.Update(ctx, live, fieldOwner); err != nil {
		return nil, fmt.Errorf("update %s %s: %w", kind, desired.GetName(), err)
	}
	return live, nil
}

// secretDataDrifted reports an edited Secret: data is cheap to compare and the config Secret is
// security-relevant, so hand edits there are reverted even when the hash matches.
func secretDataDrifted(live, desired client.Object) bool {
	l, ok := live.(*corev1.Secret)
	if !ok {
		return false
	}
	d := desired.(*corev1.Secret)
	if len(l.Data) != len(d.Data) {
		return true
	}
	for k, v := range d.Data {
		if !bytes.Equal(l.Data[k], v) {
			return true
		}
	}
	return false
}

// deleteChild removes a child the spec no longer wants, if the pool controls it.
func deleteChild(ctx context.Context, c client.Client, pool *poolingv1alpha1.ConnectionPool, obj client.Object) error {
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, pool) {
		return nil
	}
	if err := c.Delete(ctx, obj, client.Preconditions{UID: ptrTo(obj.GetUID())}); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.Deployment:
		return "Deployment"
	case *corev1.Service:
		return "Service"
	case *corev1.Secret:
		return "Secret"
	case *policyv1.PodDisruptionBudget:
		return "PodDisruptionBudget"
	}
	return fmt.Sprintf("%T", obj)
}

func ptrTo[T any](v T) *T { return &v }
