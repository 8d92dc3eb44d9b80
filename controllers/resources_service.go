package controllers

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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

// poolerNetworkPolicy admits spec.networkPolicy.clients to the Postgres and HTTP ports and
// spec.networkPolicy.metricsScrapers to the admin port; nil when not enabled.
func poolerNetworkPolicy(pool *poolingv1alpha1.ConnectionPool) *networkingv1.NetworkPolicy {
	np := pool.Spec.NetworkPolicy
	if !np.Enabled {
		return nil
	}
	tcp := corev1.ProtocolTCP
	port := func(p int) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr.To(intstr.FromInt(p))}
	}
	clientPorts := []networkingv1.NetworkPolicyPort{port(PostgresPort)}
	if pool.HTTPEnabled() {
		clientPorts = append(clientPorts, port(HTTPPort))
	}
	ingress := []networkingv1.NetworkPolicyIngressRule{{Ports: clientPorts, From: np.Clients}}
	if len(np.MetricsScrapers) > 0 {
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{
			Ports: []networkingv1.NetworkPolicyPort{port(AdminPort)}, From: np.MetricsScrapers})
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{
			Name:      networkPolicyName(pool),
			Namespace: pool.Namespace,
			Labels:    childLabels(pool, componentPooler),
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(pool)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     ingress,
		},
	}
}
