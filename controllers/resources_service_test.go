package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
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
