package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// Fixed parts of the pooler contract: container command, ports and mount paths.
const (
	PostgresPort = 5432
	HTTPPort     = 8443
	AdminPort    = 8080

	configMountDir     = "/etc/edgepool/config"
	tlsMountDir        = "/etc/edgepool/tls"
	upstreamCAMountDir = "/etc/edgepool/upstream-ca"
)

// Labels and annotations the operator puts on its children.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelPartOf    = "app.kubernetes.io/part-of"
	// labelAPIKey marks an app Secret with the name of its API key.
	labelAPIKey = "pooling.edgepool.dev/api-key"

	appName   = "edgepool-pooler"
	managedBy = "edgepool-operator"

	componentPooler = "pooler"
	componentConfig = "pooler-config"
	componentAPIKey = "api-key"
	componentTLS    = "tls"

	// annotationDesiredHash on every child is the hash of what the operator last wrote; an
	// unchanged hash means no write.
	annotationDesiredHash = "pooling.edgepool.dev/desired-hash"
	// annotationRestartHash on the pod template covers only inputs the pooler cannot reload live.
	annotationRestartHash = "pooling.edgepool.dev/restart-hash"

	// regionLabel is the well-known node label pods are pinned by.
	regionLabel = "topology.kubernetes.io/region"
	zoneLabel   = "topology.kubernetes.io/zone"
)

func deploymentName(pool *poolingv1alpha1.ConnectionPool) string { return pool.Name + "-pooler" }
func serviceName(pool *poolingv1alpha1.ConnectionPool) string    { return pool.Name + "-pooler" }
func pdbName(pool *poolingv1alpha1.ConnectionPool) string        { return pool.Name + "-pooler" }
func networkPolicyName(pool *poolingv1alpha1.ConnectionPool) string {
	return pool.Name + "-pooler"
}
func configSecretName(pool *poolingv1alpha1.ConnectionPool) string {
	return pool.Name + "-pooler-config"
}
func tlsSecretName(pool *poolingv1alpha1.ConnectionPool) string { return pool.Name + "-tls" }
func appSecretName(pool *poolingv1alpha1.ConnectionPool, key string) string {
	return pool.Name + "-" + key
}

// serviceHost is the in-cluster DNS name clients use.
func serviceHost(pool *poolingv1alpha1.ConnectionPool) string {
	return fmt.Sprintf("%s.%s.svc", serviceName(pool), pool.Namespace)
}

// selectorLabels select the pool's pods; they never change over a pool's life.
func selectorLabels(pool *poolingv1alpha1.ConnectionPool) map[string]string {
	return map[string]string{
		labelName:      appName,
		labelInstance:  pool.Name,
		labelComponent: componentPooler,
	}
}

// childLabels are put on every child; component says which one it is.
func childLabels(pool *poolingv1alpha1.ConnectionPool, component string) map[string]string {
	return map[string]string{
		labelName:      appName,
		labelInstance:  pool.Name,
		labelComponent: component,
		labelManagedBy: managedBy,
		labelPartOf:    "edgepool",
	}
}

// podSelector is selectorLabels as a label selector string (status.selector, scale subresource).
func podSelector(pool *poolingv1alpha1.ConnectionPool) string {
	return labels.SelectorFromSet(selectorLabels(pool)).String()
}
