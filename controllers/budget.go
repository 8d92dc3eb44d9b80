package controllers

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/config"
)

// The upstream budget (spec.pool.maxUpstreamConnections) holds at every moment, not only in
// steady state. Three rules make it so; docs/operator.md explains them.
//
//  1. One replica's share is held back: each replica gets floor(budget / (replicas + 1))
//     (PoolSizePerReplica), so one pod more than the replicas may hold connections at once.
//  2. At most one pod more than the replicas ever runs: rollouts never surge (maxSurge 0,
//     maxUnavailable 1) and a replaced pod counts as available only after minReadySeconds,
//     longer than the termination grace period, so the pod it replaced is gone (drained, or
//     killed at the end of its grace period) before the next one is replaced. A voluntary
//     eviction (the PodDisruptionBudget allows one) is the same one extra pod.
//  3. Pods never have to shrink in place to make room: a pooler reloads a new pool size from
//     its config Secret only after a delay the operator cannot observe (the kubelet's Secret
//     refresh), so the size only grows live. Scaling down lowers the replicas first and raises
//     the size once the removed pods are gone; scaling up (or lowering the budget) first rolls
//     the running pods onto the smaller size (the pod template carries it), and raises the
//     replicas once that rollout is complete.
//
// planBudget is rule 3: given the spec and what runs, the Deployment's replicas, the size written
// to the config Secret and the size the pod template carries.

// annotationPoolSize on the pod template is the pool size the pods were started with; lowering it
// rolls them (rule 3).
const annotationPoolSize = "pooling.edgepool.dev/pool-size"

// minReadySeconds makes a replaced pod count as available only after the pod it replaced is gone
// (rule 2): the termination grace period plus a margin.
const minReadySeconds = terminationGrace + 5

// budgetInputs are what runs: the live Deployment (nil before it exists) and the pool size in the
// live config Secret (0 when there is none).
type budgetInputs struct {
	Deployment *appsv1.Deployment
	ConfigSize int32
	// ConfigFrozen says the config Secret cannot be rewritten now (the credentials are
	// unusable): what runs is held as it is, since pods restarted or added now would start with
	// the old size.
	ConfigFrozen bool
}

// budgetPlan is what the operator writes this time.
type budgetPlan struct {
	// Replicas is the Deployment's replicas.
	Replicas int32
	// PoolSize is the per-replica size in the config Secret; TemplatePoolSize the one on the pod
	// template (annotationPoolSize).
	PoolSize, TemplatePoolSize int32
	// Waiting describes a step held back until a rollout or scale-down completes ("" when the
	// plan is the spec's).
	Waiting string
}

// planBudget applies rule 3.
func planBudget(pool *poolingv1alpha1.ConnectionPool, live budgetInputs) budgetPlan {
	want := budgetPlan{Replicas: pool.DesiredReplicas(), PoolSize: pool.PoolSizePerReplica()}
	want.TemplatePoolSize = want.PoolSize
	d := live.Deployment
	if d == nil || d.Spec.Replicas == nil || live.ConfigSize == 0 {
		return want // nothing runs yet
	}
	budget := pool.MaxUpstreamConnectionsOrDefault()
	running := *d.Spec.Replicas
	size := live.ConfigSize
	templateSize := templatePoolSize(d, size)
	settled := deploymentSettled(d)

	plan := budgetPlan{Replicas: running, PoolSize: size, TemplatePoolSize: templateSize}
	if live.ConfigFrozen {
		if want.Replicas != running || want.PoolSize != size {
			plan.Waiting = "holding the pooler replicas as they run until the upstream credentials are usable"
		}
		return plan
	}
	switch {
	case want.PoolSize < size:
		// Shrink: the running pods restart with the smaller size (the template changes), at
		// their current count; the new count follows once they all have.
		plan.PoolSize, plan.TemplatePoolSize = want.PoolSize, want.PoolSize
		if templateSize == want.PoolSize && settled {
			plan.Replicas = want.Replicas
			return plan
		}
		plan.Replicas = min(running, want.Replicas)
		plan.Waiting = fmt.Sprintf("restarting the %d running pooler replicas with pool size %d before scaling to %d", plan.Replicas, want.PoolSize, want.Replicas)
		if plan.Replicas == want.Replicas {
			plan.Waiting = ""
		}
		return plan
	case want.Replicas <= running:
		// Scale down (or nothing): fewer pods at once; the size grows once they are gone.
		plan.Replicas = want.Replicas
		if running == want.Replicas && settled {
			plan.PoolSize = want.PoolSize
		} else if want.PoolSize > size {
			plan.Waiting = fmt.Sprintf("raising the pool size to %d once the removed replicas are gone", want.PoolSize)
		}
		return plan
	default:
		// Scale up, once nothing is rolling, with a size that still fits the budget with one
		// pod of headroom.
		if settled && (want.Replicas+1)*size <= budget {
			plan.Replicas = want.Replicas
		} else {
			plan.Waiting = fmt.Sprintf("scaling to %d once the running pooler replicas settle", want.Replicas)
		}
		return plan
	}
}

// templatePoolSize reads annotationPoolSize from the live pod template (fallback when absent).
func templatePoolSize(d *appsv1.Deployment, fallback int32) int32 {
	if v, err := strconv.ParseInt(d.Spec.Template.Annotations[annotationPoolSize], 10, 32); err == nil && v > 0 {
		return int32(v)
	}
	return fallback
}

// deploymentSettled reports a Deployment whose every pod runs its current template, is available
// and has no terminating predecessor left: the pods that hold upstream connections are exactly
// its replicas.
func deploymentSettled(d *appsv1.Deployment) bool {
	s := d.Status
	want := *d.Spec.Replicas
	return s.ObservedGeneration >= d.Generation && s.Replicas == want && s.UpdatedReplicas == want &&
		s.AvailableReplicas == want && (s.TerminatingReplicas == nil || *s.TerminatingReplicas == 0)
}

// configPoolSize reads the pool size out of a live config Secret (0 when unreadable).
func configPoolSize(s *corev1.Secret) int32 {
	if s == nil {
		return 0
	}
	cfg, err := config.Parse(s.Data[config.FileName])
	if err != nil {
		return 0
	}
	return int32(cfg.Pool.Size)
}
