package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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
		{"terminal", observations{Problems: []problem{{Reason: ReasonInvalidSpec, Message: "bad", Terminal: true}}},
			false, poolingv1alpha1.PhaseFailed, metav1.ConditionFalse, ReasonDegraded, metav1.ConditionTrue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			p.Generation = 1
			p.Spec.Paused = tt.paused
			st := computeStatus(p, tt.obs)
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
	p.Status = computeStatus(p, obs)
	again := computeStatus(p, obs)
	for i, c := range again.Conditions {
		if !c.LastTransitionTime.Equal(&p.Status.Conditions[i].LastTransitionTime) {
			t.Fatalf("condition %s transition time moved without a transition", c.Type)
		}
	}
	if again.Ready != "2/2" || again.PoolSizePerReplica != 10 || again.Endpoints.Postgres != "shop-pooler.apps.svc:5432" {
		t.Fatalf("status %+v", again)
	}
}
