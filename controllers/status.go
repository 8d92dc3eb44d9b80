package controllers

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
	// UpstreamChecking is set while the first check of the current target is under way.
	UpstreamChecking bool
	// PoolSize is the per-replica upstream pool size rendered into the config (0: not planned).
	PoolSize int32
	// BudgetWaiting describes a scaling step held back for the budget (planBudget).
	BudgetWaiting string
	Problems      []problem
	Keys          []keyMaterial
}

// computeStatus derives the pool's status from the previous status and the observations. It is
// pure: the same inputs give the same status, and conditions keep their transition times when
// their status does not change. succeeded says whether every reconcile step ran: only then are
// the status and its conditions stamped with the pool's current generation (as Cluster API
// does); after a failed step they keep the generation they last described in full.
func computeStatus(pool *poolingv1alpha1.ConnectionPool, obs observations, succeeded bool) poolingv1alpha1.ConnectionPoolStatus {
	st := *pool.Status.DeepCopy()
	gen := pool.Status.ObservedGeneration
	if succeeded {
		gen = pool.Generation
	}
	desired := pool.DesiredReplicas()

	st.ObservedGeneration = gen
	st.Replicas = desired
	st.ReadyReplicas = 0
	if d := obs.Deployment; d != nil {
		st.ReadyReplicas = d.Status.ReadyReplicas
	}
	st.Ready = fmt.Sprintf("%d/%d", st.ReadyReplicas, desired)
	st.Selector = podSelector(pool)
	st.PoolSizePerReplica = obs.PoolSize
	if st.PoolSizePerReplica == 0 {
		st.PoolSizePerReplica = pool.PoolSizePerReplica()
	}
	st.Endpoints = endpoints(pool)
	st.APIKeys = keyStatuses(pool, obs.Keys)

	available, rollout := deploymentProgress(obs.Deployment, desired)
	if obs.BudgetWaiting != "" {
		rollout = obs.BudgetWaiting
	}
	for _, c := range []metav1.Condition{
		upstreamCondition(obs.Upstream, obs.UpstreamChecking),
		degradedCondition(obs.Problems),
		progressingCondition(rollout),
		readyCondition(pool, obs, available, st.ReadyReplicas),
	} {
		c.ObservedGeneration = gen
		meta.SetStatusCondition(&st.Conditions, c)
	}
	st.Phase = phase(pool, obs, available, meta.IsStatusConditionTrue(st.Conditions, poolingv1alpha1.ConditionReady))
	return st
}

// upstreamCondition reports the last reachability check (nil: none could be made).
func upstreamCondition(u *upstreamResult, checking bool) metav1.Condition {
	c := metav1.Condition{Type: poolingv1alpha1.ConditionUpstreamReachable}
	switch {
	case checking:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, ReasonChecking, "the first connection attempt is under way"
	case u == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, ReasonCredentialsUnavailable, "the upstream was not tried: its credentials are unavailable"
	case u.Reachable:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, u.Reason, u.Message
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, u.Reason, u.Message
	}
	return c
}

// degradedCondition is True with the first problem's reason and every problem's message.
func degradedCondition(problems []problem) metav1.Condition {
	if len(problems) == 0 {
		return metav1.Condition{Type: poolingv1alpha1.ConditionDegraded, Status: metav1.ConditionFalse,
			Reason: ReasonAsExpected, Message: "all children are in shape"}
	}
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.Message)
	}
	return metav1.Condition{Type: poolingv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
		Reason: problems[0].Reason, Message: strings.Join(msgs, "; ")}
}

// progressingCondition is True while rollout describes a rollout or scale in progress.
func progressingCondition(rollout string) metav1.Condition {
	if rollout != "" {
		return metav1.Condition{Type: poolingv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
			Reason: ReasonRollingOut, Message: rollout}
	}
	return metav1.Condition{Type: poolingv1alpha1.ConditionProgressing, Status: metav1.ConditionFalse,
		Reason: ReasonComplete, Message: "the pooler Deployment is up to date"}
}

// readyCondition is True when nothing is degraded, the pods serve and the upstream is reachable;
// otherwise its reason names the first thing missing.
func readyCondition(pool *poolingv1alpha1.ConnectionPool, obs observations, available bool, ready int32) metav1.Condition {
	desired := pool.DesiredReplicas()
	c := metav1.Condition{Type: poolingv1alpha1.ConditionReady, Status: metav1.ConditionFalse}
	switch {
	case len(obs.Problems) > 0:
		c.Reason, c.Message = ReasonDegraded, "the pool is degraded: see the Degraded condition"
	case !available && obs.NoNodeInRegion:
		c.Reason = ReasonNoNodeInRegion
		c.Message = fmt.Sprintf("no node carries %s=%s; pods cannot be scheduled (set spec.placement.regionAffinity: Preferred to relax)", regionLabel, pool.Spec.Region)
	case !available:
		c.Reason, c.Message = ReasonDeploymentNotAvailable, fmt.Sprintf("%d of %d pooler replicas ready", ready, desired)
	case obs.Upstream == nil || !obs.Upstream.Reachable:
		c.Reason, c.Message = ReasonUpstreamUnreachable, "the upstream is not reachable: see the UpstreamReachable condition"
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonAvailable
		c.Message = fmt.Sprintf("%d of %d pooler replicas ready and the upstream is reachable", ready, desired)
	}
	return c
}

// phase summarises the conditions in one word.
func phase(pool *poolingv1alpha1.ConnectionPool, obs observations, available, ready bool) poolingv1alpha1.Phase {
	terminal := false
	for _, p := range obs.Problems {
		terminal = terminal || p.Terminal
	}
	upstreamOK := obs.Upstream != nil && obs.Upstream.Reachable
	upstreamBad := obs.Upstream != nil && !obs.Upstream.Reachable
	switch {
	case terminal:
		return poolingv1alpha1.PhaseFailed
	case len(obs.Problems) > 0 || (available && upstreamBad):
		return poolingv1alpha1.PhaseDegraded
	case pool.Spec.Paused && ready:
		return poolingv1alpha1.PhasePaused
	case ready && upstreamOK:
		return poolingv1alpha1.PhaseReady
	}
	return poolingv1alpha1.PhasePending
}

// conditionEvent decides the event for a condition that changed from old (nil: new condition)
// to c. Events are Warnings only for problems (Degraded True, UpstreamReachable False, no node
// in the region); progress (a rollout starting or completing, replicas becoming ready, the
// upstream reached again, a problem resolved) is Normal. A pool starting up is not news unless
// something is wrong, and Unknown is never news.
func conditionEvent(old *metav1.Condition, c metav1.Condition) (eventType string, emit bool) {
	if old != nil && old.Status == c.Status && old.Reason == c.Reason {
		return "", false
	}
	if c.Status == metav1.ConditionUnknown {
		return "", false
	}
	problem := false
	switch c.Type {
	case poolingv1alpha1.ConditionDegraded:
		problem = c.Status == metav1.ConditionTrue
	case poolingv1alpha1.ConditionUpstreamReachable:
		problem = c.Status == metav1.ConditionFalse
	case poolingv1alpha1.ConditionReady:
		problem = c.Status == metav1.ConditionFalse && c.Reason == ReasonNoNodeInRegion
	}
	if problem {
		return corev1.EventTypeWarning, true
	}
	if old == nil {
		return "", false
	}
	return corev1.EventTypeNormal, true
}

// deploymentProgress says whether the Deployment serves the desired replicas from its current
// template (updated and ready), and otherwise, or while the last replaced pods are still going
// away, describes the rollout in progress.
func deploymentProgress(d *appsv1.Deployment, desired int32) (serving bool, rollout string) {
	if d == nil {
		return false, "the pooler Deployment is being created"
	}
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "the Deployment controller has not observed the latest pooler Deployment yet"
	case s.UpdatedReplicas < desired:
		return false, fmt.Sprintf("%d of %d pooler replicas updated", s.UpdatedReplicas, desired)
	case s.ReadyReplicas < desired:
		return false, fmt.Sprintf("%d of %d pooler replicas ready", s.ReadyReplicas, desired)
	case s.Replicas > desired:
		return true, fmt.Sprintf("%d old pooler replicas terminating", s.Replicas-desired)
	case s.TerminatingReplicas != nil && *s.TerminatingReplicas > 0:
		return true, fmt.Sprintf("%d pooler replicas terminating", *s.TerminatingReplicas)
	case s.AvailableReplicas < desired:
		return true, fmt.Sprintf("%d of %d pooler replicas available", s.AvailableReplicas, desired)
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
