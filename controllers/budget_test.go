package controllers

import (
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// liveDeployment is a Deployment running replicas pods started with templateSize; settled says
// whether every pod is updated, available and no replaced pod is still terminating.
func liveDeployment(replicas, templateSize int32, settled bool) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Template: podTemplateWithSize(templateSize)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas, TerminatingReplicas: ptr.To[int32](0)},
	}
	if !settled {
		d.Status.TerminatingReplicas = ptr.To[int32](1)
	}
	return d
}

func podTemplateWithSize(size int32) (t corev1.PodTemplateSpec) {
	t.Annotations = map[string]string{annotationPoolSize: strconv.Itoa(int(size))}
	return t
}

// TestPlanBudget walks scale 2→5→1 and a budget cut with budget 20 and checks each step's plan;
// at every step the pods that can hold connections (replicas + the one a rollout replaces) times
// the largest size any of them may have stays within the budget.
func TestPlanBudget(t *testing.T) {
	tests := []struct {
		name                  string
		replicas, budget      int32 // spec
		live                  budgetInputs
		want                  budgetPlan
		waiting               bool
		podsAtOnce, worstSize int32 // worst case while this plan is in force
	}{
		{"create", 2, 20, budgetInputs{}, budgetPlan{Replicas: 2, PoolSize: 6, TemplatePoolSize: 6}, false, 3, 6},
		{"steady", 2, 20, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6}, budgetPlan{Replicas: 2, PoolSize: 6, TemplatePoolSize: 6}, false, 3, 6},
		{"scale up 2→5: restart the 2 with size 3 first", 5, 20, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6},
			budgetPlan{Replicas: 2, PoolSize: 3, TemplatePoolSize: 3}, true, 3, 6},
		{"…while they restart, keep 2", 5, 20, budgetInputs{Deployment: liveDeployment(2, 3, false), ConfigSize: 3},
			budgetPlan{Replicas: 2, PoolSize: 3, TemplatePoolSize: 3}, true, 3, 6},
		{"…then scale to 5", 5, 20, budgetInputs{Deployment: liveDeployment(2, 3, true), ConfigSize: 3},
			budgetPlan{Replicas: 5, PoolSize: 3, TemplatePoolSize: 3}, false, 6, 3},
		{"scale down 5→1: fewer pods first, size kept", 1, 20, budgetInputs{Deployment: liveDeployment(5, 3, true), ConfigSize: 3},
			budgetPlan{Replicas: 1, PoolSize: 3, TemplatePoolSize: 3}, true, 6, 3},
		{"…while the 4 drain, size kept", 1, 20, budgetInputs{Deployment: liveDeployment(1, 3, false), ConfigSize: 3},
			budgetPlan{Replicas: 1, PoolSize: 3, TemplatePoolSize: 3}, true, 6, 3},
		{"…then the size grows live (no restart)", 1, 20, budgetInputs{Deployment: liveDeployment(1, 3, true), ConfigSize: 3},
			budgetPlan{Replicas: 1, PoolSize: 10, TemplatePoolSize: 3}, false, 2, 10},
		{"scale up with room: at once", 3, 40, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6},
			budgetPlan{Replicas: 3, PoolSize: 6, TemplatePoolSize: 6}, false, 4, 6},
		// A lower budget binds once the pods restarted with the smaller size: until then they
		// hold what the old budget gave them (no worst case to check against the new one).
		{"budget cut, same replicas: restart with the smaller size", 2, 9, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6},
			budgetPlan{Replicas: 2, PoolSize: 3, TemplatePoolSize: 3}, false, 0, 0},
		{"credentials unusable: hold what runs", 5, 20, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6, ConfigFrozen: true},
			budgetPlan{Replicas: 2, PoolSize: 6, TemplatePoolSize: 6}, true, 3, 6},
		{"scale to zero", 0, 20, budgetInputs{Deployment: liveDeployment(2, 6, true), ConfigSize: 6},
			budgetPlan{Replicas: 0, PoolSize: 6, TemplatePoolSize: 6}, true, 3, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			p.Spec.Replicas = ptr.To(tt.replicas)
			p.Spec.Pool.MaxUpstreamConnections = tt.budget
			got := planBudget(p, tt.live)
			if (got.Waiting != "") != tt.waiting {
				t.Errorf("waiting %q, want waiting=%v", got.Waiting, tt.waiting)
			}
			got.Waiting = ""
			if got != tt.want {
				t.Fatalf("plan %+v, want %+v", got, tt.want)
			}
			// Before this plan the pods held at most worstSize (the old or the new size, whichever
			// is larger, until restarted); at most podsAtOnce of them exist at once.
			if used := tt.podsAtOnce * tt.worstSize; used > tt.budget && tt.live.Deployment != nil {
				t.Fatalf("worst case %d × %d = %d exceeds the budget %d", tt.podsAtOnce, tt.worstSize, used, tt.budget)
			}
		})
	}
}
