package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/csaupgrade"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
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
	case *networkingv1.NetworkPolicy:
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

// copyDesired moves the operator-owned parts of a desired Secret onto the live one, leaving
// labels and annotations other tools added alone. (The other children are applied server-side.)
func copyDesired(live, desired *corev1.Secret) {
	if live.Labels == nil {
		live.Labels = map[string]string{}
	}
	maps.Copy(live.Labels, desired.Labels)
	if live.Annotations == nil {
		live.Annotations = map[string]string{}
	}
	maps.Copy(live.Annotations, desired.Annotations)
	live.Data = desired.Data
	live.StringData = nil
	// Keys the operator once wrote but no longer wants (e.g. the previous-key verifier after its
	// grace period) are removed.
	for _, k := range ownedAnnotationKeys {
		if _, ok := desired.Annotations[k]; !ok {
			delete(live.Annotations, k)
		}
	}
}

// ownedAnnotationKeys are annotations the operator may drop from a child.
var ownedAnnotationKeys = []string{annotationPreviousKey}

// ensureChild creates desired when absent and otherwise brings the live object back to it: a
// Deployment, Service or PodDisruptionBudget by server-side apply (applyChild), which also
// reverts hand edits of the fields the operator owns; a Secret by an update when its desired hash
// changed or someone edited its data. It never touches an object the pool does not control:
// that is reported as *errNameConflict. It returns the live object after the call. A foreign
// Secret is not in the cache (which holds only the operator's own), so a create that finds the
// name taken asks the API server before calling it cache lag.
func (r *Reconciler) ensureChild(ctx context.Context, pool *poolingv1alpha1.ConnectionPool, desired client.Object) (client.Object, error) {
	c, uncached := r.Client, r.Reader
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
			if apierrors.IsAlreadyExists(err) {
				other := desired.DeepCopyObject().(client.Object)
				if gerr := uncached.Get(ctx, client.ObjectKeyFromObject(desired), other); gerr == nil && !metav1.IsControlledBy(other, pool) {
					return nil, &errNameConflict{Kind: kind, Name: desired.GetName()}
				}
			}
			return nil, fmt.Errorf("create %s %s: %w", kind, desired.GetName(), err)
		}
		if _, isSecret := desired.(*corev1.Secret); !isSecret {
			r.applied.record(desired, hash) // created as desired: nothing to apply until it changes
		}
		return desired, nil
	case err != nil:
		return nil, fmt.Errorf("get %s %s: %w", kind, desired.GetName(), err)
	}
	if !metav1.IsControlledBy(live, pool) {
		return nil, &errNameConflict{Kind: kind, Name: desired.GetName()}
	}
	liveSecret, ok := live.(*corev1.Secret)
	if !ok {
		if r.applied.unchanged(live, hash) {
			return live, nil
		}
		out, err := applyChild(ctx, c, live, desired)
		if err == nil {
			r.applied.record(out, hash)
		}
		return out, err
	}
	desiredSecret := desired.(*corev1.Secret)
	if liveSecret.Annotations[annotationDesiredHash] == hash && !secretDataDrifted(liveSecret, desiredSecret) {
		return live, nil
	}
	copyDesired(liveSecret, desiredSecret)
	if err := c.Update(ctx, live, fieldOwner); err != nil {
		return nil, fmt.Errorf("update %s %s: %w", kind, desired.GetName(), err)
	}
	return live, nil
}

// appliedMarks remember, per child the operator applied, what it applied (the desired hash) and
// the child's state right after: its UID and, for a Deployment, its generation (which only spec
// changes move, not the Deployment controller's status writes), otherwise its resourceVersion. A
// child still in that state needs no apply: nobody changed it since. Anything else (a hand edit,
// a replaced object, an operator restart, a new desired hash) applies again, which is what
// reverts hand edits.
type appliedMarks struct {
	mu sync.Mutex
	m  map[string]appliedMark // by kind/namespace/name
}

type appliedMark struct {
	hash, state string
}

func childKey(o client.Object) string { return kindOf(o) + "/" + o.GetNamespace() + "/" + o.GetName() }

func childState(o client.Object) string {
	if _, ok := o.(*appsv1.Deployment); ok {
		return fmt.Sprintf("%s generation %d", o.GetUID(), o.GetGeneration())
	}
	return fmt.Sprintf("%s resourceVersion %s", o.GetUID(), o.GetResourceVersion())
}

func (a *appliedMarks) unchanged(live client.Object, hash string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.m[childKey(live)]
	return ok && m.hash == hash && m.state == childState(live)
}

func (a *appliedMarks) record(live client.Object, hash string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]appliedMark{}
	}
	a.m[childKey(live)] = appliedMark{hash: hash, state: childState(live)}
}

// forget drops the marks of a deleted pool's applied children.
func (a *appliedMarks) forget(pool types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := &poolingv1alpha1.ConnectionPool{}
	p.Namespace, p.Name = pool.Namespace, pool.Name
	for _, child := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: deploymentName(p)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: serviceName(p)}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: pdbName(p)}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: networkPolicyName(p)}},
	} {
		delete(a.m, childKey(child))
	}
}

// applyChild writes a Deployment, Service or PodDisruptionBudget the pool controls by server-side
// apply with the operator's field owner, forcing ownership. The API server does the merge: every
// field the operator sets is put back to its desired value (a hand-edited image, a removed
// affinity, a changed port), fields it leaves out stay with whoever set them (clusterIP and
// nodePorts, foreign labels and annotations, defaults), fields it stops setting are removed, and
// an apply that changes nothing is not persisted (no new resourceVersion, no watch event).
// live is the object read before; its UID goes into the apply, so if the object was replaced
// since the read the write fails (uid is immutable) instead of adopting the newcomer.
func applyChild(ctx context.Context, c client.Client, live, desired client.Object) (client.Object, error) {
	kind := kindOf(desired)
	if err := upgradeManagedFields(ctx, c, live); err != nil {
		return nil, fmt.Errorf("move %s %s to server-side apply: %w", kind, desired.GetName(), err)
	}
	if l, ok := live.(*corev1.Service); ok {
		if err := replaceStrayServicePorts(ctx, c, l, desired.(*corev1.Service)); err != nil {
			return nil, fmt.Errorf("reset ports of Service %s: %w", desired.GetName(), err)
		}
	}
	u, err := applyConfiguration(c.Scheme(), desired)
	if err != nil {
		return nil, fmt.Errorf("apply configuration of %s %s: %w", kind, desired.GetName(), err)
	}
	u.SetUID(live.GetUID())
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), fieldOwner, client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("apply %s %s: %w", kind, desired.GetName(), err)
	}
	out := desired.DeepCopyObject().(client.Object)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, fmt.Errorf("decode applied %s %s: %w", kind, desired.GetName(), err)
	}
	return out, nil
}

// replaceStrayServicePorts puts the desired port list on a Service whose ports include one the
// operator does not want. Service ports are a list keyed by port and protocol: to server-side
// apply, a port whose number someone edited is another item, owned by the editor, and would stay
// next to the desired one (two ports named postgres, which the API server rejects). The list is
// replaced with a merge patch pinned to the resourceVersion read, keeping the nodePorts the API
// server allocated.
func replaceStrayServicePorts(ctx context.Context, c client.Client, live, desired *corev1.Service) error {
	type portKey struct {
		Port     int32
		Protocol corev1.Protocol
	}
	wanted := map[portKey]bool{}
	for _, p := range desired.Spec.Ports {
		wanted[portKey{p.Port, p.Protocol}] = true
	}
	stray := false
	for _, p := range live.Spec.Ports {
		stray = stray || !wanted[portKey{p.Port, p.Protocol}]
	}
	if !stray {
		return nil
	}
	base := live.DeepCopy()
	nodePorts := map[string]int32{}
	for _, p := range live.Spec.Ports {
		nodePorts[p.Name] = p.NodePort
	}
	live.Spec.Ports = append([]corev1.ServicePort(nil), desired.Spec.Ports...)
	if live.Spec.Type != corev1.ServiceTypeClusterIP && desired.Spec.Type != corev1.ServiceTypeClusterIP {
		for i := range live.Spec.Ports {
			live.Spec.Ports[i].NodePort = nodePorts[live.Spec.Ports[i].Name]
		}
	}
	return c.Patch(ctx, live, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// applyConfiguration turns a desired child into the body of an apply request: exactly the
// fields the operator sets. It goes through encoding/json, which leaves out the omitempty and
// omitzero fields the operator did not set (an unstructured conversion would keep zero values
// such as creationTimestamp: null and claim them); status is dropped, it is not ours to apply.
func applyConfiguration(scheme *runtime.Scheme, desired client.Object) (*unstructured.Unstructured, error) {
	gvk, err := apiutil.GVKForObject(desired, scheme)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(desired)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(raw, &u.Object); err != nil {
		return nil, err
	}
	delete(u.Object, "status")
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// upgradeManagedFields hands the fields the operator wrote with Create (every child's first
// version, so that a foreign object can never be adopted) or Update (children written before
// the operator applied server-side) over to its apply field manager. Otherwise those fields
// stay owned by the old update manager and are never removed when the operator stops setting
// them (a dropped toleration, the http port when HTTP is turned off). One write per child, once.
// The patch pins the resourceVersion read, so a stale read fails with a conflict.
func upgradeManagedFields(ctx context.Context, c client.Client, live client.Object) error {
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(live, sets.New(string(fieldOwner)), string(fieldOwner))
	if err != nil || patch == nil {
		return err
	}
	return c.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch))
}

// secretDataDrifted reports an edited Secret: data is cheap to compare and the config Secret is
// security-relevant, so hand edits there are reverted even when the hash matches.
func secretDataDrifted(live, desired *corev1.Secret) bool {
	if len(live.Data) != len(desired.Data) {
		return true
	}
	for k, v := range desired.Data {
		if !bytes.Equal(live.Data[k], v) {
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
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy"
	}
	return fmt.Sprintf("%T", obj)
}

func ptrTo[T any](v T) *T { return &v }
