package localkubelet

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// syncDeployment converges the local replicas of d on its spec, as the deployment controller
// would, and writes its status. A rollout follows the Deployment's strategy: with RollingUpdate,
// new replicas are started while the live ones stay within replicas + maxSurge, and old ones are
// stopped while the available ones stay at or above replicas - maxUnavailable, where a replica
// counts as available minReadySeconds after it became ready; with Recreate, every old replica is
// stopped and gone before a new one starts. As in a cluster, a stopping replica counts for
// neither limit (it is reported as terminating) while it drains.
func (k *Kubelet) syncDeployment(ctx context.Context, d *appsv1.Deployment) {
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	desired := 1
	if d.Spec.Replicas != nil {
		desired = int(*d.Spec.Replicas)
	}
	hash := templateHash(&d.Spec.Template)
	minReady := k.minReady(d)

	k.mu.Lock()
	pods := removeExited(k.pods[key])
	if !d.Spec.Paused {
		pods = k.roll(d, key, hash, desired, minReady, pods)
	}
	k.pods[key] = pods
	live := append([]*pod(nil), pods...)
	k.mu.Unlock()

	for _, p := range live {
		if p.isTerminating() {
			continue
		}
		if err := k.syncVolumes(ctx, p); err != nil {
			p.setWaiting(err.Error())
			continue
		}
		p.launch()
	}
	k.writeStatus(ctx, d, hash, desired, minReady, live)
}

// roll starts and stops replicas for one step of the Deployment's strategy (k.mu held).
func (k *Kubelet) roll(d *appsv1.Deployment, key types.NamespacedName, hash string, desired int, minReady time.Duration, pods []*pod) []*pod {
	var current, old []*pod
	for _, p := range pods {
		switch {
		case p.isTerminating():
		case p.hash == hash:
			current = append(current, p)
		default:
			old = append(old, p)
		}
	}
	// Scale down: the current template's replicas beyond the count go first.
	sort.Slice(current, func(i, j int) bool { return current[i].index < current[j].index })
	for len(current) > desired {
		current[len(current)-1].stop("scaled down")
		current = current[:len(current)-1]
	}
	maxSurge, maxUnavailable := rolloutLimits(d, desired)
	recreate := d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType
	if recreate {
		for _, p := range old {
			p.stop("recreated with template " + hash)
		}
		for _, p := range pods {
			if p.hash != hash && !p.exitedNow() {
				return pods // new replicas wait until every old one is gone
			}
		}
		old = nil
	}
	// Old replicas beyond the count leave first (a scale-down during a rollout).
	for len(current)+len(old) > desired && len(old) > 0 && !recreate {
		old[len(old)-1].stop("scaled down")
		old = old[:len(old)-1]
	}
	// Start new replicas within replicas + maxSurge live ones.
	used := map[int]bool{}
	for _, p := range current {
		used[p.index] = true
	}
	for i := 0; len(current) < desired && len(current)+len(old) < desired+maxSurge; i++ {
		if used[i] {
			continue
		}
		p, err := k.newPod(d, hash, i)
		if err != nil {
			k.log.Error("create replica", "deployment", key, "index", i, "err", err)
			break
		}
		k.log.Info("replica created", "deployment", key, "pod", p.name, "templateHash", hash, "ports", p.portSummary())
		pods = append(pods, p)
		current = append(current, p)
		used[i] = true
	}
	// Stop old replicas while the available ones stay at or above replicas - maxUnavailable.
	available := 0
	for _, p := range append(append([]*pod(nil), current...), old...) {
		if p.isAvailable(minReady) {
			available++
		}
	}
	for _, p := range old {
		after := available
		if p.isAvailable(minReady) {
			after--
		}
		if after < desired-maxUnavailable {
			break
		}
		p.stop("replaced by template " + hash)
		available = after
	}
	return pods
}

// rolloutLimits resolves the RollingUpdate maxSurge and maxUnavailable against the replicas
// (percentages: surge rounded up, unavailable down; both zero means one unavailable), with the
// API server's defaults of 25 %.
func rolloutLimits(d *appsv1.Deployment, desired int) (maxSurge, maxUnavailable int) {
	surge, unavailable := intstr.FromString("25%"), intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surge = *ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			unavailable = *ru.MaxUnavailable
		}
	}
	maxSurge, _ = intstr.GetScaledValueFromIntOrPercent(&surge, desired, true)
	maxUnavailable, _ = intstr.GetScaledValueFromIntOrPercent(&unavailable, desired, false)
	if maxSurge == 0 && maxUnavailable == 0 {
		maxUnavailable = 1
	}
	return maxSurge, maxUnavailable
}

// minReady is the Deployment's minReadySeconds, capped (and logged) like the termination grace
// period: at MaxTerminationGrace + 5s, which keeps a minReadySeconds chosen to outlast a
// predecessor's grace period doing so under the cap.
func (k *Kubelet) minReady(d *appsv1.Deployment) time.Duration {
	want := time.Duration(d.Spec.MinReadySeconds) * time.Second
	capped := min(want, k.opts.MaxTerminationGrace+5*time.Second)
	if capped != want && k.loggedMinReady.CompareAndSwap(false, true) {
		k.log.Info("rewrite", "where", "deployment "+d.Namespace+"/"+d.Name+" minReadySeconds", "from", want.String(), "to", capped.String())
	}
	return capped
}

// writeStatus reports the replicas as the deployment controller would, from what runs here.
func (k *Kubelet) writeStatus(ctx context.Context, d *appsv1.Deployment, hash string, desired int, minReady time.Duration, pods []*pod) {
	var total, updated, ready, available, terminating int32
	for _, p := range pods {
		if p.isTerminating() {
			terminating++
			continue
		}
		total++
		if p.hash == hash {
			updated++
		}
		if p.isReady() {
			ready++
		}
		if p.isAvailable(minReady) {
			available++
		}
	}
	status := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            total,
		UpdatedReplicas:     updated,
		ReadyReplicas:       ready,
		AvailableReplicas:   available,
		UnavailableReplicas: max(0, int32(desired)-available),
		TerminatingReplicas: &terminating,
	}
	availableCond := metav1.ConditionTrue
	availReason, availMsg := "MinimumReplicasAvailable", "Deployment has minimum availability."
	if available < int32(desired) {
		availableCond = metav1.ConditionFalse
		availReason, availMsg = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
	}
	progressReason := "NewReplicaSetAvailable"
	progressMsg := fmt.Sprintf("local replicas of template %s are available", hash)
	if updated < int32(desired) || total > updated || available < int32(desired) || terminating > 0 {
		progressReason = "ReplicaSetUpdated"
		progressMsg = fmt.Sprintf("local replicas of template %s are progressing", hash)
	}
	status.Conditions = []appsv1.DeploymentCondition{
		condition(d, appsv1.DeploymentAvailable, corev1.ConditionStatus(availableCond), availReason, availMsg),
		condition(d, appsv1.DeploymentProgressing, corev1.ConditionTrue, progressReason, progressMsg),
	}
	if apiequality.Semantic.DeepEqual(d.Status, status) {
		return
	}
	patched := d.DeepCopy()
	patched.Status = status
	if err := k.client.Status().Patch(ctx, patched, client.MergeFrom(d)); err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			k.log.Error("write deployment status", "deployment", d.Namespace+"/"+d.Name, "err", err)
		}
		return
	}
	k.log.Info("deployment status", "deployment", d.Namespace+"/"+d.Name, "generation", d.Generation,
		"replicas", total, "updated", updated, "ready", ready, "available", available, "terminating", terminating, "desired", desired)
}

// condition keeps the transition times of an unchanged condition, so status only changes when
// something did.
func condition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) appsv1.DeploymentCondition {
	for _, c := range d.Status.Conditions {
		if c.Type == typ && c.Status == status && c.Reason == reason && c.Message == msg {
			return c
		}
	}
	now := metav1.Now()
	c := appsv1.DeploymentCondition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastUpdateTime: now, LastTransitionTime: now}
	for _, old := range d.Status.Conditions {
		if old.Type == typ && old.Status == status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return c
}
