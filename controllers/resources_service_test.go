package controllers

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

func TestPoolerService(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(p *poolingv1alpha1.ConnectionPool)
		wantType  corev1.ServiceType
		wantPorts []int32
	}{
		{"defaults", nil, corev1.ServiceTypeClusterIP, []int32{5432, 8443}},
		{"http off", func(p *poolingv1alpha1.ConnectionPool) { p.Spec.HTTP.Enabled = ptr.To(false) }, corev1.ServiceTypeClusterIP, []int32{5432}},
		{"load balancer", func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
			p.Spec.Service.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
			p.Spec.Service.Annotations = map[string]string{"lb": "internal"}
		}, corev1.ServiceTypeLoadBalancer, []int32{5432, 8443}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			if tt.mutate != nil {
				tt.mutate(p)
			}
			s := poolerService(p)
			if s.Name != "shop-pooler" || s.Spec.Type != tt.wantType || s.Spec.Selector[labelInstance] != "shop" {
				t.Fatalf("service %+v", s)
			}
			var ports []int32
			for _, sp := range s.Spec.Ports {
				ports = append(ports, sp.Port)
			}
			if len(ports) != len(tt.wantPorts) {
				t.Fatalf("ports %v, want %v", ports, tt.wantPorts)
			}
			for i := range ports {
				if ports[i] != tt.wantPorts[i] {
					t.Fatalf("ports %v, want %v", ports, tt.wantPorts)
				}
			}
			if tt.wantType == corev1.ServiceTypeLoadBalancer && (s.Annotations["lb"] != "internal" || len(s.Spec.LoadBalancerSourceRanges) != 1) {
				t.Fatal("load balancer settings not applied")
			}
		})
	}
}

func TestPoolerPDB(t *testing.T) {
	for _, tt := range []struct {
		replicas int32
		want     bool
	}{{0, false}, {1, false}, {2, true}, {7, true}} {
		p := samplePool()
		p.Spec.Replicas = ptr.To(tt.replicas)
		pdb := poolerPDB(p)
		if (pdb != nil) != tt.want {
			t.Fatalf("replicas %d: pdb %v, want %v", tt.replicas, pdb != nil, tt.want)
		}
		if pdb != nil && pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Fatalf("maxUnavailable %v", pdb.Spec.MaxUnavailable)
		}
	}
}

func TestPoolerNetworkPolicy(t *testing.T) {
	scrapers := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "monitoring"}}}}
	apps := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "app"}}}}
	tests := []struct {
		name        string
		settings    poolingv1alpha1.NetworkPolicySettings
		httpOff     bool
		wantNil     bool
		wantRules   int
		wantPorts   []int
		wantClients int
	}{
		{"off", poolingv1alpha1.NetworkPolicySettings{}, false, true, 0, nil, 0},
		{"on: clients from anywhere, admin closed", poolingv1alpha1.NetworkPolicySettings{Enabled: true}, false, false, 1, []int{5432, 8443}, 0},
		{"clients and scrapers", poolingv1alpha1.NetworkPolicySettings{Enabled: true, Clients: apps, MetricsScrapers: scrapers}, false, false, 2, []int{5432, 8443}, 1},
		{"http off", poolingv1alpha1.NetworkPolicySettings{Enabled: true}, true, false, 1, []int{5432}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			p.Spec.NetworkPolicy = tt.settings
			if tt.httpOff {
				p.Spec.HTTP.Enabled = ptr.To(false)
			}
			np := poolerNetworkPolicy(p)
			if (np == nil) != tt.wantNil {
				t.Fatalf("policy %v, want nil=%v", np, tt.wantNil)
			}
			if np == nil {
				return
			}
			if np.Spec.PodSelector.MatchLabels[labelInstance] != "shop" || len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
				t.Fatalf("selector/types %+v", np.Spec)
			}
			if len(np.Spec.Ingress) != tt.wantRules {
				t.Fatalf("%d rules, want %d", len(np.Spec.Ingress), tt.wantRules)
			}
			var ports []int
			for _, port := range np.Spec.Ingress[0].Ports {
				ports = append(ports, port.Port.IntValue())
			}
			if !slices.Equal(ports, tt.wantPorts) || len(np.Spec.Ingress[0].From) != tt.wantClients {
				t.Fatalf("client rule %+v", np.Spec.Ingress[0])
			}
			if tt.wantRules == 2 && (np.Spec.Ingress[1].Ports[0].Port.IntValue() != AdminPort || len(np.Spec.Ingress[1].From) != 1) {
				t.Fatalf("admin rule %+v", np.Spec.Ingress[1])
			}
		})
	}
}
