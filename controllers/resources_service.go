package controllers

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// poolerService exposes the Postgres port and, when enabled, the HTTP port. The admin port
// (metrics, probes) stays pod-local.
func poolerService(pool *poolingv1alpha1.ConnectionPool) *corev1.Service {
	svcType := pool.Spec.Service.Type
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP
	}
	ports := []corev1.ServicePort{{
		Name: "postgres", Port: PostgresPort, TargetPort: intstr.FromString("postgres"), Protocol: corev1.ProtocolTCP,
		AppProtocol: ptr.To("postgresql"),
	}}
	if pool.HTTPEnabled() {
		ports = append(ports, corev1.ServicePort{
			Name: "http", Port: HTTPPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP,
		})
	}
	var annotations map[string]string
	if len(pool.Spec.Service.Annotations) > 0 {
		annotations = maps.Clone(pool.Spec.Service.Annotations)
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:        serviceName(pool),
			Namespace:   pool.Namespace,
			Labels:      childLabels(pool, componentPooler),
			Annotations: annotations,
		},
		Spec: corev1.ServiceSpec{
			Type:                     svcType,
			Selector:                 selectorLabels(pool),
			Ports:                    ports,
			LoadBalancerSourceRanges: pool.Spec.Service.LoadBalancerSourceRanges,
		},
	}
}

// poolerPDB keeps at least one pooler up during voluntary disruptions; only meaningful (and
// only built) with more than one replica.
func poolerPDB(pool *poolingv1alpha1.ConnectionPool) *policyv1.PodDisruptionBudget {
	if pool.DesiredReplicas() <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{
			Name:      pdbName(pool),
			Namespace: pool.Namespace,
			Labels:    childLabels(pool, componentPooler),
		},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(pool)},
		},
	}
}
