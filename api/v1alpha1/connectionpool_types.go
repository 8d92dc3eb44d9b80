package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectionPool runs a regional PostgreSQL connection pooler in front of one upstream database.
// Apps reach it over the Postgres wire protocol, WebSocket or the HTTP SQL endpoint, authenticating
// with the API keys listed in the spec.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=cpool,categories=edgepool
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.pool.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoints.postgres`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 52",message="metadata.name must be a DNS label of at most 52 characters starting with a letter (it prefixes the pooler Service name)"
type ConnectionPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired pool.
	// +required
	Spec ConnectionPoolSpec `json:"spec"`
	// Status is the observed state of the pool, written by the operator.
	// +optional
	Status ConnectionPoolStatus `json:"status,omitempty"`
}

// ConnectionPoolSpec is the desired state of a ConnectionPool.
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas == 0 || self.replicas < (has(self.pool) && has(self.pool.maxUpstreamConnections) ? self.pool.maxUpstreamConnections : 20)",message="replicas must be lower than pool.maxUpstreamConnections: each replica needs at least one upstream connection and one replica's share of the budget is held back for rollouts",fieldPath=.replicas
type ConnectionPoolSpec struct {
	// Region pins the pooler pods to nodes labelled topology.kubernetes.io/region=<region>.
	// Immutable: moving a pool to another region is a new pool.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="region is immutable"
	Region string `json:"region"`

	// Placement controls how strictly pods are pinned to the region.
	// +optional
	// +kubebuilder:default={regionAffinity: Required}
	Placement Placement `json:"placement,omitempty"`

	// Upstream is the PostgreSQL server the pool connects to.
	// +required
	Upstream Upstream `json:"upstream"`

	// Replicas is the number of pooler pods. The upstream connection budget is split across them
	// with one replica's share held back (see pool.maxUpstreamConnections), so it must be lower
	// than the budget. Also reachable through the scale subresource (kubectl scale,
	// HorizontalPodAutoscaler).
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Replicas *int32 `json:"replicas,omitempty"`

	// Pool holds the pooling policy: mode, connection budgets and timeouts.
	// +optional
	// +kubebuilder:default={}
	Pool PoolSettings `json:"pool,omitempty"`

	// APIKeys are the credentials apps connect with. Each key gets its own Secret
	// <pool>-<name> holding the key and ready-made connection strings.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	APIKeys []APIKey `json:"apiKeys"`

	// HTTP configures the HTTP SQL endpoint and the WebSocket transport.
	// +optional
	// +kubebuilder:default={}
	HTTP HTTPSettings `json:"http,omitempty"`

	// TLS configures the pooler's server certificate for client connections.
	// +optional
	// +kubebuilder:default={mode: Generated}
	TLS TLSSettings `json:"tls,omitempty"`

	// Service configures the Service in front of the pooler pods.
	// +optional
	// +kubebuilder:default={type: ClusterIP}
	Service ServiceSettings `json:"service,omitempty"`

	// Template holds overrides for the pooler pods.
	// +optional
	Template PodOverrides `json:"template,omitempty"`

	// NetworkPolicy, when enabled, restricts which sources may connect to the pooler pods.
	// +optional
	NetworkPolicy NetworkPolicySettings `json:"networkPolicy,omitempty"`

	// Image is the pooler container image. Empty means the operator's own image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// Paused makes the poolers hold new transactions; transactions in flight finish.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// RegionAffinity says how strictly pods must land in the pool's region.
// +kubebuilder:validation:Enum=Required;Preferred
type RegionAffinity string

const (
	// RegionAffinityRequired schedules pods only on nodes of the region.
	RegionAffinityRequired RegionAffinity = "Required"
	// RegionAffinityPreferred prefers nodes of the region but runs elsewhere when there are none
	// (single-region and development clusters often carry no region label).
	RegionAffinityPreferred RegionAffinity = "Preferred"
)

// Placement controls where pooler pods run.
type Placement struct {
	// RegionAffinity is Required (default: only nodes of the region) or Preferred.
	// +optional
	// +kubebuilder:default=Required
	RegionAffinity RegionAffinity `json:"regionAffinity,omitempty"`
}

// SSLMode is a libpq sslmode.
// +kubebuilder:validation:Enum=disable;prefer;require;verify-ca;verify-full
type SSLMode string

// Upstream is the PostgreSQL server behind the pool.
// +kubebuilder:validation:XValidation:rule="!has(self.sslMode) || !(self.sslMode in ['verify-ca', 'verify-full']) || has(self.caSecret)",message="caSecret is required when sslMode is verify-ca or verify-full",fieldPath=.caSecret
type Upstream struct {
	// Host is the upstream server's DNS name or IP address.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$`
	Host string `json:"host"`

	// Port is the upstream server's port.
	// +optional
	// +kubebuilder:default=5432
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// Database is the upstream database. Clients connect to the pool with the same name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Database string `json:"database"`

	// SSLMode is the libpq sslmode towards the upstream: disable, prefer, require (default:
	// encrypted; with caSecret the chain is checked), verify-ca or verify-full (recommended:
	// chain and host name checked against caSecret).
	// +optional
	// +kubebuilder:default=require
	SSLMode SSLMode `json:"sslMode,omitempty"`

	// CASecret names a Secret in the pool's namespace holding the upstream's CA bundle; required
	// for verify-ca and verify-full.
	// +optional
	CASecret *SecretKeyRef `json:"caSecret,omitempty"`

	// CredentialsSecret names the Secret in the pool's namespace holding the upstream user name
	// and password.
	// +required
	CredentialsSecret CredentialsSecretRef `json:"credentialsSecret"`
}

// SecretKeyRef names one key of a Secret in the pool's namespace.
type SecretKeyRef struct {
	// Name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
	// Key is the data key holding the CA bundle.
	// +optional
	// +kubebuilder:default="ca.crt"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// CredentialsSecretRef names the Secret with the upstream credentials and its keys.
type CredentialsSecretRef struct {
	// Name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
	// UsernameKey is the data key holding the user name.
	// +optional
	// +kubebuilder:default=username
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	UsernameKey string `json:"usernameKey,omitempty"`
	// PasswordKey is the data key holding the password.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	PasswordKey string `json:"passwordKey,omitempty"`
}

// PoolMode is the pooling mode.
// +kubebuilder:validation:Enum=transaction;session
type PoolMode string

const (
	// PoolModeTransaction holds an upstream connection for one transaction.
	PoolModeTransaction PoolMode = "transaction"
	// PoolModeSession holds an upstream connection for a client's whole session.
	PoolModeSession PoolMode = "session"
)

// PoolSettings is the pooling policy.
type PoolSettings struct {
	// Mode is transaction (default) or session.
	// +optional
	// +kubebuilder:default=transaction
	Mode PoolMode `json:"mode,omitempty"`

	// MaxUpstreamConnections is the TOTAL number of connections the pool opens to the upstream,
	// across all replicas, at every moment, including scaling and rollouts: each replica gets
	// floor(maxUpstreamConnections / (replicas + 1)), the share held back covering the one extra
	// pod a rollout or eviction runs while the pod it replaces drains.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxUpstreamConnections int32 `json:"maxUpstreamConnections,omitempty"`

	// MaxClientConnections caps client connections per replica.
	// +optional
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxClientConnections int32 `json:"maxClientConnections,omitempty"`

	// QueryWaitTimeout is how long a client waits for an upstream connection before it gets an
	// error.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="queryWaitTimeout must be positive"
	QueryWaitTimeout *metav1.Duration `json:"queryWaitTimeout,omitempty"`

	// IdleTransactionTimeout disconnects a client that sits idle inside a transaction this long
	// (0 disables).
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	IdleTransactionTimeout *metav1.Duration `json:"idleTransactionTimeout,omitempty"`

	// ServerLifetime retires upstream connections older than this (0 disables).
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	ServerLifetime *metav1.Duration `json:"serverLifetime,omitempty"`
}

// APIKey is one credential apps connect with: the user name is the key's name, the password is
// the key.
// +kubebuilder:validation:XValidation:rule="!(self.name in ['pooler-config', 'tls'])",message="name must not be pooler-config or tls (those Secret names are taken by the pool)",fieldPath=.name
type APIKey struct {
	// Name is the key's name: the client user name and the suffix of its Secret <pool>-<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Rotation is bumped to issue a fresh key; the previous key stays valid for GracePeriod.
	// It may only increase.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:XValidation:rule="self >= oldSelf",message="rotation may only increase"
	Rotation int32 `json:"rotation,omitempty"`

	// GracePeriod is how long the previous key stays valid after a rotation.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`

	// Disabled refuses the key at once. Its Secret is kept so re-enabling restores the same key.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// HTTPSettings configures the HTTP SQL endpoint and the WebSocket transport.
type HTTPSettings struct {
	// Enabled serves the HTTP SQL endpoint and WebSocket on port 8443 (default true).
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// Cache is the opt-in result cache of the HTTP SQL endpoint.
	// +optional
	Cache HTTPCache `json:"cache,omitempty"`
}

// HTTPCache configures the HTTP query result cache.
type HTTPCache struct {
	// Enabled turns the cache on.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// DefaultTTL is the time to live of a cached result when the request names none (0: cache only
	// on request).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	DefaultTTL *metav1.Duration `json:"defaultTTL,omitempty"`
	// MaxBytes caps the cache's memory per replica (default 64Mi).
	// +optional
	MaxBytes *resource.Quantity `json:"maxBytes,omitempty"`
}

// TLSMode says where the pooler's server certificate comes from.
// +kubebuilder:validation:Enum=Generated;Secret;Disabled
type TLSMode string

const (
	// TLSGenerated makes the operator issue a CA and a server certificate (Secret <pool>-tls).
	TLSGenerated TLSMode = "Generated"
	// TLSSecret uses a kubernetes.io/tls Secret the user provides (e.g. from cert-manager).
	TLSSecret TLSMode = "Secret"
	// TLSDisabled serves plaintext. Only for development.
	TLSDisabled TLSMode = "Disabled"
)

// TLSSettings configures the pooler's server certificate.
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'Secret' || (has(self.secretName) && size(self.secretName) > 0)",message="secretName is required when mode is Secret",fieldPath=.secretName
// +kubebuilder:validation:XValidation:rule="(has(self.mode) && self.mode == 'Secret') || !has(self.secretName)",message="secretName is only allowed when mode is Secret",fieldPath=.secretName
type TLSSettings struct {
	// Mode is Generated (default: operator-made CA and certificate), Secret or Disabled.
	// +optional
	// +kubebuilder:default=Generated
	Mode TLSMode `json:"mode,omitempty"`
	// SecretName names a kubernetes.io/tls Secret in the pool's namespace (mode Secret). Its
	// optional ca.crt is copied into the app Secrets.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`
}

// ServiceSettings configures the pooler Service.
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'LoadBalancer') || !has(self.loadBalancerSourceRanges) || size(self.loadBalancerSourceRanges) == 0",message="loadBalancerSourceRanges is only allowed with type LoadBalancer",fieldPath=.loadBalancerSourceRanges
type ServiceSettings struct {
	// Type is ClusterIP (default), NodePort or LoadBalancer.
	// +optional
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	Type corev1.ServiceType `json:"type,omitempty"`
	// ExternalHost is the DNS name clients outside the cluster use. It is added to the generated
	// certificate and to the app Secrets as EXTERNAL_DATABASE_URL / EXTERNAL_HTTP_URL.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ExternalHost string `json:"externalHost,omitempty"`
	// Annotations are added to the Service (e.g. load balancer settings).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// LoadBalancerSourceRanges restricts client addresses for type LoadBalancer.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	LoadBalancerSourceRanges []string `json:"loadBalancerSourceRanges,omitempty"`
}

// NetworkPolicySettings configure the NetworkPolicy <pool>-pooler the operator keeps for the
// pooler pods (ingress only: the upstream is named by host, which a NetworkPolicy cannot
// express, so egress is left to the cluster's own policies).
type NetworkPolicySettings struct {
	// Enabled creates the NetworkPolicy; disabling it deletes it.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// Clients may reach the Postgres and HTTP ports. Empty: any source (apps in the cluster
	// and, through the Service, the internet).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Clients []networkingv1.NetworkPolicyPeer `json:"clients,omitempty"`
	// MetricsScrapers may reach the admin port (/metrics; the kubelet's probes use it too, and
	// network plugins generally let the node's own traffic through). Empty: no other pod.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	MetricsScrapers []networkingv1.NetworkPolicyPeer `json:"metricsScrapers,omitempty"`
}

// PodOverrides are the parts of the pooler pod a user may set.
type PodOverrides struct {
	// Labels are added to the pods (the operator's own labels win).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// Resources of the pooler container (default: requests 100m CPU and 128Mi memory, limit
	// 512Mi memory). The HTTP cache (http.cache.maxBytes) counts against the limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Tolerations of the pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// NodeSelector of the pods, in addition to the region.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Affinity of the pods; the region requirement is added to it.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// PriorityClassName of the pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// ImagePullSecrets of the pods.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// TopologySpreadConstraints replace the default spread across zones.
	// +optional
	// +listType=atomic
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
}

// Phase is a one-word summary of a pool's state for humans and printer columns.
// +kubebuilder:validation:Enum=Pending;Ready;Degraded;Paused;Failed
type Phase string

const (
	// PhasePending means children are being created or rolled out.
	PhasePending Phase = "Pending"
	// PhaseReady means all replicas are available and the upstream is reachable.
	PhaseReady Phase = "Ready"
	// PhaseDegraded means something needs attention (see conditions).
	PhaseDegraded Phase = "Degraded"
	// PhasePaused means spec.paused is set.
	PhasePaused Phase = "Paused"
	// PhaseFailed means the spec cannot be realised without a change.
	PhaseFailed Phase = "Failed"
)

// Condition types.
const (
	// ConditionReady is True when every replica is available and the upstream is reachable.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a rollout or scale is in progress.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when the operator cannot realise the spec (missing Secret,
	// name conflict, ...).
	ConditionDegraded = "Degraded"
	// ConditionUpstreamReachable reports the operator's last connection attempt to the upstream.
	ConditionUpstreamReachable = "UpstreamReachable"
)

// ConnectionPoolStatus is the observed state of a ConnectionPool.
type ConnectionPoolStatus struct {
	// Phase summarises the conditions in one word.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Conditions: Ready, Progressing, Degraded, UpstreamReachable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Replicas is the number of pooler pods desired (scale subresource).
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas is the number of available pooler pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Ready is "readyReplicas/replicas", for the printer column.
	// +optional
	Ready string `json:"ready,omitempty"`
	// Selector is the pods' label selector (scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// PoolSizePerReplica is the number of upstream connections each replica opens.
	// +optional
	PoolSizePerReplica int32 `json:"poolSizePerReplica,omitempty"`
	// Endpoints are the addresses clients connect to.
	// +optional
	Endpoints Endpoints `json:"endpoints,omitempty"`
	// APIKeys lists each key's Secret and fingerprint (never the key).
	// +optional
	// +listType=map
	// +listMapKey=name
	APIKeys []APIKeyStatus `json:"apiKeys,omitempty"`
}

// Endpoints are the pool's client-facing addresses.
type Endpoints struct {
	// Postgres is host:port of the wire protocol endpoint inside the cluster.
	// +optional
	Postgres string `json:"postgres,omitempty"`
	// HTTP is the URL of the HTTP SQL endpoint inside the cluster.
	// +optional
	HTTP string `json:"http,omitempty"`
	// External is host:port for clients outside the cluster (spec.service.externalHost).
	// +optional
	External string `json:"external,omitempty"`
}

// APIKeyStatus describes one API key without revealing it.
type APIKeyStatus struct {
	// Name is the key's name.
	Name string `json:"name"`
	// SecretName is the Secret holding the key and connection strings.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// Fingerprint is the first 8 hex digits of the key's SHA-256.
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`
	// CreatedAt is when the current key was issued.
	// +optional
	CreatedAt *metav1.Time `json:"createdAt,omitempty"`
	// Rotation is the spec rotation the current key was issued for.
	// +optional
	Rotation int32 `json:"rotation,omitempty"`
	// PreviousFingerprint identifies the previous key while it is in its grace period.
	// +optional
	PreviousFingerprint string `json:"previousFingerprint,omitempty"`
	// PreviousValidUntil is the end of the previous key's grace period.
	// +optional
	PreviousValidUntil *metav1.Time `json:"previousValidUntil,omitempty"`
	// Disabled is true while the key is refused.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// ConnectionPoolList is a list of ConnectionPools.
// +kubebuilder:object:root=true
type ConnectionPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the pools.
	Items []ConnectionPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ConnectionPool{}, &ConnectionPoolList{})
}
