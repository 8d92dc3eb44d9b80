package controllers

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/apikey"
)

// Reasons of the Ready, Progressing and Degraded conditions.
const (
	ReasonAvailable                = "Available"
	ReasonDeploymentNotAvailable   = "DeploymentNotAvailable"
	ReasonNoNodeInRegion           = "NoNodeInRegion"
	ReasonUpstreamUnreachable      = "UpstreamUnreachable"
	ReasonDegraded                 = "Degraded"
	ReasonRollingOut               = "RollingOut"
	ReasonComplete                 = "Complete"
	ReasonAsExpected               = "AsExpected"
	ReasonCredentialsSecretMissing = "CredentialsSecretMissing"
	ReasonCredentialsKeyMissing    = "CredentialsKeyMissing"
	ReasonSecretMissing            = "SecretMissing"
	ReasonNameConflict             = "NameConflict"
	ReasonReconcileError           = "ReconcileError"
	ReasonInvalidSpec              = "InvalidSpec"
)

// problem is a reason the pool cannot be realised as specified; it makes the pool Degraded.
// Messages name objects and fields, never secret values.
type problem struct {
	Reason  string
	Message string
	// Terminal problems need a spec change (phase Failed) rather than a retry.
	Terminal bool
}

// observations are what one reconcile learned; computeStatus turns them into the status.
type observations struct {
	Deployment     *appsv1.Deployment
	Upstream       *upstreamResult // nil when no attempt could be made
	NoNodeInRegion bool
	Problems       []problem
	Keys           []keyMaterial
}

// computeStatus derives the pool's status from the previous status and the observations. It is
// pure: the same inputs give the same status, and conditions keep their transition times when
// their status does not change.
func computeStatus(pool *poolingv1alpha1.ConnectionPool, obs observations) poolingv1alpha1.ConnectionPoolStatus {
	st := *pool.Status.DeepCopy()
	gen := pool.Generation
	desired := pool.DesiredReplicas()

	st.ObservedGeneration = gen
	st.Replicas = desired
	st.ReadyReplicas = 0
	if d := obs.Deployment; d != nil {
		st.ReadyReplicas = d.Status.AvailableReplicas
	}
	st.Ready = fmt.Sprintf("%d/%d", st.ReadyReplicas, desired)
	st.Selector = podSelector(pool)
	st.PoolSizePerReplica = pool.PoolSizePerReplica()
	st.Endpoints = endpoints(pool)
	st.APIKeys = keyStatuses(pool, obs.Keys)

	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
		})
	}

	// UpstreamReachable
	switch u := obs.Upstream; {
	case u == nil:
		set(poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionUnknown, ReasonCredentialsUnavailable,
			"the upstream was not tried: its credentials are unavailable")
	case u.Reachable:
		set(poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionTrue, u.Reason, u.Message)
	default:
		set(poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionFalse, u.Reason, u.Message)
	}

	// Degraded
	degraded := len(obs.Problems) > 0
	terminal := false
	if degraded {
		msgs := make([]string, 0, len(obs.Problems))
		for _, p := range obs.Problems {
			msgs = append(msgs, p.Message)
			terminal = terminal || p.Terminal
		}
		set(poolingv1alpha1.ConditionDegraded, metav1.ConditionTrue, obs.Problems[0].Reason, strings.Join(msgs, "; "))
	} else {
		set(poolingv1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "all children are in shape")
	}

	// Progressing
	available, rollout := deploymentProgress(obs.Deployment, desired)
	if rollout != "" {
		set(poolingv1alpha1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, rollout)
	} else {
		set(poolingv1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete, "the pooler Deployment is up to date")
	}

	// Ready
	upstreamOK := obs.Upstream != nil && obs.Upstream.Reachable
	switch {
	case degraded:
		set(poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDegraded, "the pool is degraded: see the Degraded condition")
	case !available && obs.NoNodeInRegion:
		set(poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNoNodeInRegion,
			fmt.Sprintf("no node carries %s=%s; pods cannot be scheduled (set spec.placement.regionAffinity: Preferred to relax)", regionLabel, pool.Spec.Region))
	case !available:
		set(poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeploymentNotAvailable,
			fmt.Sprintf("%d of %d pooler replicas available", st.ReadyReplicas, desired))
	case !upstreamOK:
		set(poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonUpstreamUnreachable, "the upstream is not reachable: see the UpstreamReachable condition")
	default:
		set(poolingv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable,
			fmt.Sprintf("%d of %d pooler replicas available and the upstream is reachable", st.ReadyReplicas, desired))
	}
	ready := meta.IsStatusConditionTrue(st.Conditions, poolingv1alpha1.ConditionReady)

	switch {
	case terminal:
		st.Phase = poolingv1alpha1.PhaseFailed
	case degraded || (available && !upstreamOK):
		st.Phase = poolingv1alpha1.PhaseDegraded
	case pool.Spec.Paused && ready:
		st.Phase = poolingv1alpha1.PhasePaused
	case ready:
		st.Phase = poolingv1alpha1.PhaseReady
	default:
		st.Phase = poolingv1alpha1.PhasePending
	}
	return st
}

// deploymentProgress says whether the Deployment serves the desired replicas at its current
// generation, and otherwise describes the rollout in progress.
func deploymentProgress(d *appsv1.Deployment, desired int32) (available bool, rollout string) {
	if d == nil {
		return false, "the pooler Deployment is being created"
	}
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "the Deployment controller has not observed the latest pooler Deployment yet"
	case s.UpdatedReplicas < desired:
		return false, fmt.Sprintf("%d of %d pooler replicas updated", s.UpdatedReplicas, desired)
	case s.Replicas > desired:
		return false, fmt.Sprintf("%d old pooler replicas terminating", s.Replicas-desired)
	case s.AvailableReplicas < desired:
		return false, fmt.Sprintf("%d of %d pooler replicas available", s.AvailableReplicas, desired)
	}
	return true, ""
}

func endpoints(pool *poolingv1alpha1.ConnectionPool) poolingv1alpha1.Endpoints {
	host := serviceHost(pool)
	e := poolingv1alpha1.Endpoints{Postgres: net.JoinHostPort(host, strconv.Itoa(PostgresPort))}
	if pool.HTTPEnabled() {
		e.HTTP = httpURL(pool, host)
	}
	if ext := pool.Spec.Service.ExternalHost; ext != "" {
		e.External = net.JoinHostPort(ext, strconv.Itoa(PostgresPort))
	}
	return e
}

// keyStatuses lists each key's Secret and fingerprints; never the key.
func keyStatuses(pool *poolingv1alpha1.ConnectionPool, keys []keyMaterial) []poolingv1alpha1.APIKeyStatus {
	if len(keys) == 0 {
		return nil
	}
	out := make([]poolingv1alpha1.APIKeyStatus, 0, len(keys))
	for _, k := range keys {
		ks := poolingv1alpha1.APIKeyStatus{
			Name:        k.Name,
			SecretName:  appSecretName(pool, k.Name),
			Fingerprint: apikey.Fingerprint(k.Key),
			Rotation:    k.Rotation,
			Disabled:    k.Disabled,
		}
		if !k.CreatedAt.IsZero() {
			ks.CreatedAt = &metav1.Time{Time: k.CreatedAt}
		}
		if k.Previous != nil {
			ks.PreviousFingerprint = k.Previous.Fingerprint
			if k.Previous.NotAfter != nil {
				ks.PreviousValidUntil = &metav1.Time{Time: *k.Previous.NotAfter}
			}
		}
		out = append(out, ks)
	}
	return out
}
