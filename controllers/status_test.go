package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

func availableDeployment(gen int64, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: gen},
		Status: appsv1.DeploymentStatus{ObservedGeneration: gen, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
}

func TestComputeStatus(t *testing.T) {
	reachable := &upstreamResult{Reachable: true, Reason: ReasonConnected, Message: "ok"}
	authFailed := &upstreamResult{Reason: ReasonAuthenticationFailed, Message: "authentication failed"}
	tests := []struct {
		name        string
		obs         observations
		paused      bool
		wantPhase   poolingv1alpha1.Phase
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantDegrade metav1.ConditionStatus
	}{
		{"available and reachable", observations{Deployment: availableDeployment(1, 2), Upstream: reachable},
			false, poolingv1alpha1.PhaseReady, metav1.ConditionTrue, ReasonAvailable, metav1.ConditionFalse},
		{"paused", observations{Deployment: availableDeployment(1, 2), Upstream: reachable},
			true, poolingv1alpha1.PhasePaused, metav1.ConditionTrue, ReasonAvailable, metav1.ConditionFalse},
		{"rolling out", observations{Deployment: availableDeployment(1, 1), Upstream: reachable},
			false, poolingv1alpha1.PhasePending, metav1.ConditionFalse, ReasonDeploymentNotAvailable, metav1.ConditionFalse},
		{"no node in region", observations{Deployment: availableDeployment(1, 0), Upstream: reachable, NoNodeInRegion: true},
			false, poolingv1alpha1.PhasePending, metav1.ConditionFalse, ReasonNoNodeInRegion, metav1.ConditionFalse},
		{"wrong password", observations{Deployment: availableDeployment(1, 2), Upstream: authFailed},
			false, poolingv1alpha1.PhaseDegraded, metav1.ConditionFalse, ReasonUpstreamUnreachable, metav1.ConditionFalse},
		{"credentials missing", observations{Deployment: availableDeployment(1, 2), Problems: []problem{{Reason: ReasonCredentialsSecretMissing, Message: "missing"}}},
			false, poolingv1alpha1.PhaseDegraded, metav1.ConditionFalse, ReasonDegraded, metav1.ConditionTrue},
		{"terminal", observations{Problems: []problem{{Reason: ReasonReconcileError, Message: "bad", Terminal: true}}},
			false, poolingv1alpha1.PhaseFailed, metav1.ConditionFalse, ReasonDegraded, metav1.ConditionTrue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			p.Generation = 1
			p.Spec.Paused = tt.paused
			st := computeStatus(p, tt.obs, true)
			if st.Phase != tt.wantPhase {
				t.Errorf("phase %s, want %s", st.Phase, tt.wantPhase)
			}
			ready := meta.FindStatusCondition(st.Conditions, poolingv1alpha1.ConditionReady)
			if ready.Status != tt.wantReady || ready.Reason != tt.wantReason || ready.ObservedGeneration != 1 {
				t.Errorf("ready %+v", ready)
			}
			if d := meta.FindStatusCondition(st.Conditions, poolingv1alpha1.ConditionDegraded); d.Status != tt.wantDegrade {
				t.Errorf("degraded %+v", d)
			}
			if st.Selector != "app.kubernetes.io/component=pooler,app.kubernetes.io/instance=shop,app.kubernetes.io/name=edgepool-pooler" {
				t.Errorf("selector %q", st.Selector)
			}
		})
	}
}

func TestComputeStatusIsStable(t *testing.T) {
	p := samplePool()
	obs := observations{Deployment: availableDeployment(3, 2), Upstream: &upstreamResult{Reachable: true, Reason: ReasonConnected}}
	p.Status = computeStatus(p, obs, true)
	again := computeStatus(p, obs, true)
	for i, c := range again.Conditions {
		if !c.LastTransitionTime.Equal(&p.Status.Conditions[i].LastTransitionTime) {
			t.Fatalf("condition %s transition time moved without a transition", c.Type)
		}
	}
	if again.Ready != "2/2" || again.PoolSizePerReplica != 6 || again.Endpoints.Postgres != "shop-pooler.apps.svc:5432" {
		t.Fatalf("status %+v", again)
	}
}

// TestObservedGenerationOnlyAfterSuccess: a failed reconcile step leaves status.observedGeneration
// and every condition's observedGeneration at the generation last reconciled in full.
func TestObservedGenerationOnlyAfterSuccess(t *testing.T) {
	p := samplePool()
	p.Generation = 4
	obs := observations{Deployment: availableDeployment(1, 2), Upstream: &upstreamResult{Reachable: true, Reason: ReasonConnected}}
	p.Status = computeStatus(p, obs, true)
	p.Generation = 5
	failed := computeStatus(p, observations{Problems: []problem{{Reason: ReasonReconcileError, Message: "apply Deployment: boom"}}}, false)
	if failed.ObservedGeneration != 4 {
		t.Fatalf("observedGeneration %d after a failed step, want 4", failed.ObservedGeneration)
	}
	for _, c := range failed.Conditions {
		if c.ObservedGeneration != 4 {
			t.Errorf("condition %s observedGeneration %d after a failed step, want 4", c.Type, c.ObservedGeneration)
		}
	}
	if d := meta.FindStatusCondition(failed.Conditions, poolingv1alpha1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != ReasonReconcileError {
		t.Errorf("the failure is not reported: %+v", d)
	}
	ok := computeStatus(p, obs, true)
	if ok.ObservedGeneration != 5 || meta.FindStatusCondition(ok.Conditions, poolingv1alpha1.ConditionReady).ObservedGeneration != 5 {
		t.Fatalf("observedGeneration not stamped after success: %+v", ok)
	}
}

func TestUpstreamCondition(t *testing.T) {
	tests := []struct {
		name       string
		res        *upstreamResult
		checking   bool
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"no credentials", nil, false, metav1.ConditionUnknown, ReasonCredentialsUnavailable},
		{"first check running", nil, true, metav1.ConditionUnknown, ReasonChecking},
		{"connected", &upstreamResult{Reachable: true, Reason: ReasonConnected, Message: "connected"}, false, metav1.ConditionTrue, ReasonConnected},
		{"refused", &upstreamResult{Reason: ReasonUnreachable, Message: "refused"}, false, metav1.ConditionFalse, ReasonUnreachable},
		{"black hole", &upstreamResult{Reason: ReasonTimeout, Message: "no answer"}, false, metav1.ConditionFalse, ReasonTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := upstreamCondition(tt.res, tt.checking)
			if c.Type != poolingv1alpha1.ConditionUpstreamReachable || c.Status != tt.wantStatus || c.Reason != tt.wantReason || c.Message == "" {
				t.Fatalf("got %+v", c)
			}
		})
	}
}

func TestDegradedCondition(t *testing.T) {
	if c := degradedCondition(nil); c.Status != metav1.ConditionFalse || c.Reason != ReasonAsExpected {
		t.Fatalf("no problems: %+v", c)
	}
	c := degradedCondition([]problem{{Reason: ReasonSecretMissing, Message: "a"}, {Reason: ReasonNameConflict, Message: "b"}})
	if c.Status != metav1.ConditionTrue || c.Reason != ReasonSecretMissing || c.Message != "a; b" {
		t.Fatalf("two problems: %+v", c)
	}
}

func TestProgressingAndReadyConditions(t *testing.T) {
	terminating := availableDeployment(2, 2)
	terminating.Status.TerminatingReplicas = ptrTo[int32](1)
	notReady := availableDeployment(2, 2)
	notReady.Status.ReadyReplicas = 1
	stale := availableDeployment(2, 2)
	stale.Status.ObservedGeneration = 1
	reachable := &upstreamResult{Reachable: true, Reason: ReasonConnected}
	tests := []struct {
		name            string
		obs             observations
		wantProgressing metav1.ConditionStatus
		wantReady       metav1.ConditionStatus
		wantReason      string
	}{
		{"settled", observations{Deployment: availableDeployment(2, 2), Upstream: reachable}, metav1.ConditionFalse, metav1.ConditionTrue, ReasonAvailable},
		{"old pods still terminating: serving, still progressing", observations{Deployment: terminating, Upstream: reachable}, metav1.ConditionTrue, metav1.ConditionTrue, ReasonAvailable},
		{"a pod not ready", observations{Deployment: notReady, Upstream: reachable}, metav1.ConditionTrue, metav1.ConditionFalse, ReasonDeploymentNotAvailable},
		{"not observed yet", observations{Deployment: stale, Upstream: reachable}, metav1.ConditionTrue, metav1.ConditionFalse, ReasonDeploymentNotAvailable},
		{"no deployment", observations{Upstream: reachable}, metav1.ConditionTrue, metav1.ConditionFalse, ReasonDeploymentNotAvailable},
		{"checking the upstream", observations{Deployment: availableDeployment(2, 2), UpstreamChecking: true}, metav1.ConditionFalse, metav1.ConditionFalse, ReasonUpstreamUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			serving, rollout := deploymentProgress(tt.obs.Deployment, p.DesiredReplicas())
			if c := progressingCondition(rollout); c.Status != tt.wantProgressing {
				t.Errorf("progressing %+v", c)
			}
			if c := readyCondition(p, tt.obs, serving, 2); c.Status != tt.wantReady || c.Reason != tt.wantReason {
				t.Errorf("ready %+v", c)
			}
		})
	}
}

// TestConditionEvent: Warnings only for problems, Normal for progress, nothing for a start-up
// that goes well or for an unchanged condition.
func TestConditionEvent(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
		return &metav1.Condition{Type: typ, Status: status, Reason: reason}
	}
	const (
		ready    = poolingv1alpha1.ConditionReady
		progress = poolingv1alpha1.ConditionProgressing
		degraded = poolingv1alpha1.ConditionDegraded
		upstream = poolingv1alpha1.ConditionUpstreamReachable
		tru      = metav1.ConditionTrue
		fals     = metav1.ConditionFalse
	)
	tests := []struct {
		name     string
		old, new *metav1.Condition
		want     string // "" = no event
	}{
		{"rollout completes", cond(progress, tru, ReasonRollingOut), cond(progress, fals, ReasonComplete), corev1.EventTypeNormal},
		{"rollout starts", cond(progress, fals, ReasonComplete), cond(progress, tru, ReasonRollingOut), corev1.EventTypeNormal},
		{"pool becomes ready", cond(ready, fals, ReasonDeploymentNotAvailable), cond(ready, tru, ReasonAvailable), corev1.EventTypeNormal},
		{"pods rolling: not ready is progress", cond(ready, tru, ReasonAvailable), cond(ready, fals, ReasonDeploymentNotAvailable), corev1.EventTypeNormal},
		{"no node in region", cond(ready, fals, ReasonDeploymentNotAvailable), cond(ready, fals, ReasonNoNodeInRegion), corev1.EventTypeWarning},
		{"degraded", cond(degraded, fals, ReasonAsExpected), cond(degraded, tru, ReasonSecretMissing), corev1.EventTypeWarning},
		{"degraded at start", nil, cond(degraded, tru, ReasonCredentialsSecretMissing), corev1.EventTypeWarning},
		{"healed", cond(degraded, tru, ReasonSecretMissing), cond(degraded, fals, ReasonAsExpected), corev1.EventTypeNormal},
		{"upstream lost", cond(upstream, tru, ReasonConnected), cond(upstream, fals, ReasonTimeout), corev1.EventTypeWarning},
		{"upstream unreachable at start", nil, cond(upstream, fals, ReasonAuthenticationFailed), corev1.EventTypeWarning},
		{"upstream back", cond(upstream, fals, ReasonTimeout), cond(upstream, tru, ReasonConnected), corev1.EventTypeNormal},
		{"first check of a good upstream", cond(upstream, metav1.ConditionUnknown, ReasonChecking), cond(upstream, tru, ReasonConnected), corev1.EventTypeNormal},
		{"start-up that goes well", nil, cond(progress, tru, ReasonRollingOut), ""},
		{"start-up not degraded", nil, cond(degraded, fals, ReasonAsExpected), ""},
		{"checking is not news", cond(upstream, tru, ReasonConnected), cond(upstream, metav1.ConditionUnknown, ReasonChecking), ""},
		{"unchanged", cond(degraded, tru, ReasonSecretMissing), cond(degraded, tru, ReasonSecretMissing), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, emit := conditionEvent(tt.old, *tt.new)
			if !emit {
				got = ""
			}
			if got != tt.want {
				t.Fatalf("event %q, want %q", got, tt.want)
			}
		})
	}
}
