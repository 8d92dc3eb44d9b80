package localkubelet

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// syncDeployment converges the local replicas of d on its spec and writes its status.
func (k *Kubelet) syncDeployment(ctx context.Context, d *appsv1.Deployment) {
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	desired := 1
	if d.Spec.Replicas != nil {
		desired = int(*d.Spec.Replicas)
	}
	hash := templateHash(&d.Spec.Template)

	k.mu.Lock()
	pods := removeExited(k.pods[key])
	current := map[int]*pod{}
	readyCurrent := 0
	for _, p := range pods {
		if p.hash == hash && !p.isTerminating() {
			current[p.index] = p
			if p.isReady() {
				readyCurrent++
			}
		}
	}
	if !d.Spec.Paused {
		for i := 0; i < desired; i++ {
			if current[i] != nil {
				continue
			}
			p, err := k.newPod(d, hash, i)
			if err != nil {
				k.log.Error("create replica", "deployment", key, "index", i, "err", err)
				continue
			}
			k.log.Info("replica created", "deployment", key, "pod", p.name, "templateHash", hash,
				"ports", p.portSummary())
			pods = append(pods, p)
			current[i] = p
		}
		for i, p := range current {
			if i >= desired {
				p.stop("scaled down")
			}
		}
		// Surge roll: replicas of an older template stop once the new ones are all ready.
		if readyCurrent >= desired {
			for _, p := range pods {
				if p.hash != hash {
					p.stop("replaced by template " + hash)
				}
			}
		}
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
	k.writeStatus(ctx, d, hash, desired, live)
}

// writeStatus reports the replicas as the deployment controller would, from what runs here.
func (k *Kubelet) writeStatus(ctx context.Context, d *appsv1.Deployment, hash string, desired int, pods []*pod) {
	var total, updated, ready int32
	for _, p := range pods {
		if p.isTerminating() {
			continue
		}
		total++
		if p.hash == hash {
			updated++
		}
		if p.isReady() {
			ready++
		}
	}
	status := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            total,
		UpdatedReplicas:     updated,
		ReadyReplicas:       ready,
		AvailableReplicas:   ready,
		UnavailableReplicas: max(0, int32(desired)-ready),
	}
	available := metav1.ConditionTrue
	availReason, availMsg := "MinimumReplicasAvailable", "Deployment has minimum availability."
	if ready < int32(desired) {
		available = metav1.ConditionFalse
		availReason, availMsg = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
	}
	progressReason := "NewReplicaSetAvailable"
	progressMsg := fmt.Sprintf("local replicas of template %s are available", hash)
	if updated < int32(desired) || total > updated || ready < int32(desired) {
		progressReason = "ReplicaSetUpdated"
		progressMsg = fmt.Sprintf("local replicas of template %s are progressing", hash)
	}
	status.Conditions = []appsv1.DeploymentCondition{
		condition(d, appsv1.DeploymentAvailable, corev1.ConditionStatus(available), availReason, availMsg),
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
		"replicas", total, "updated", updated, "ready", ready, "desired", desired)
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
