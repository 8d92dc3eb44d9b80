package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/config"
)

const (
	poolerContainer = "pooler"
	poolerUID       = 65532
	// terminationGrace leaves room for the pooler's drain (config ShutdownTimeout 25s) after
	// the preStop pause that lets endpoints update.
	terminationGrace = 40
	preStopSeconds   = 5
)

// deploymentInputs are the non-spec facts the pod template depends on.
type deploymentInputs struct {
	// Image is the pooler image (spec.image or the operator's own image).
	Image string
	// CertSerial identifies the generated server certificate; a renewal rolls the pods so the
	// pooler serves the new certificate. Empty outside TLS mode Generated.
	CertSerial string
	// Budget gives the replicas and the pool size the pods start with (planBudget); the zero
	// value means the spec's own.
	Budget budgetPlan
}

// restartHash covers what rolls the pods without being part of the pod template: the pooler's
// restart-only settings (config.RestartSettings, the one list the pooler's reload also uses) and
// the serial of the generated certificate. Everything else the pooler reloads live from its
// config Secret (keys, pool size, timeouts, paused, upstream address and credentials, the HTTP
// limits and cache), so changing it never rolls pods; what is in the template (image, volumes,
// ports, overrides, placement) rolls them by being there.
func restartHash(pool *poolingv1alpha1.ConnectionPool, in deploymentInputs) string {
	cfg := poolerConfigBase(pool)
	inputs := struct {
		Config     config.RestartSettings
		CertSerial string
	}{cfg.RestartSettings(), in.CertSerial}
	raw, err := json.Marshal(inputs)
	if err != nil {
		panic(fmt.Sprintf("restartHash: %v", err)) // plain data always marshals
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// poolerDeployment is the pooler Deployment: region-pinned, spread over zones, locked down, rolled
// one pod at a time when the pod template changes, sized by the upstream budget (budget.go).
func poolerDeployment(pool *poolingv1alpha1.ConnectionPool, in deploymentInputs) *appsv1.Deployment {
	sel := selectorLabels(pool)
	podLabels := maps.Clone(pool.Spec.Template.Labels)
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	maps.Copy(podLabels, childLabels(pool, componentPooler))
	podAnnotations := maps.Clone(pool.Spec.Template.Annotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	podAnnotations[annotationRestartHash] = restartHash(pool, in)
	plan := in.Budget
	if plan.TemplatePoolSize == 0 {
		plan = planBudget(pool, budgetInputs{})
	}
	podAnnotations[annotationPoolSize] = strconv.Itoa(int(plan.TemplatePoolSize))

	tsc := pool.Spec.Template.TopologySpreadConstraints
	if len(tsc) == 0 {
		tsc = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       zoneLabel,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: sel},
		}}
	}

	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:      deploymentName(pool),
			Namespace: pool.Namespace,
			Labels:    childLabels(pool, componentPooler),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To(plan.Replicas),
			Selector:             &metav1.LabelSelector{MatchLabels: sel},
			RevisionHistoryLimit: ptr.To[int32](5),
			// Never more than one pod beyond the replicas (budget.go, rule 2): no surge, one pod
			// replaced at a time, the next only once its predecessor is surely gone.
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(1)),
					MaxSurge:       ptr.To(intstr.FromInt32(0)),
				},
			},
			MinReadySeconds: minReadySeconds,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](terminationGrace),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](poolerUID),
						RunAsGroup:     ptr.To[int64](poolerUID),
						FSGroup:        ptr.To[int64](poolerUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Affinity:                  poolerAffinity(pool),
					TopologySpreadConstraints: tsc,
					Tolerations:               pool.Spec.Template.Tolerations,
					NodeSelector:              pool.Spec.Template.NodeSelector,
					PriorityClassName:         pool.Spec.Template.PriorityClassName,
					ImagePullSecrets:          pool.Spec.Template.ImagePullSecrets,
					Containers:                []corev1.Container{poolerContainerSpec(pool, in.Image)},
					Volumes:                   poolerVolumes(pool),
				},
			},
		},
	}
}

func poolerContainerSpec(pool *poolingv1alpha1.ConnectionPool, image string) corev1.Container {
	// A memory limit keeps a pooler that misbehaves from taking the node down with it; the
	// HTTP cache (64Mi by default) and client buffers fit well inside it.
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	if r := pool.Spec.Template.Resources; r != nil {
		resources = *r
	}
	ports := []corev1.ContainerPort{{Name: "postgres", ContainerPort: PostgresPort, Protocol: corev1.ProtocolTCP}}
	if pool.HTTPEnabled() {
		ports = append(ports, corev1.ContainerPort{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP})
	}
	ports = append(ports, corev1.ContainerPort{Name: "admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP})

	mounts := []corev1.VolumeMount{{Name: "config", MountPath: configMountDir, ReadOnly: true}}
	if pool.TLSEnabled() {
		mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: tlsMountDir, ReadOnly: true})
	}
	if pool.Spec.Upstream.CASecret != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: "upstream-ca", MountPath: upstreamCAMountDir, ReadOnly: true})
	}
	mounts = append(mounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})

	return corev1.Container{
		Name:            poolerContainer,
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/edgepool"},
		Args:            []string{"pooler", "--config", path.Join(configMountDir, config.FileName)},
		Ports:           ports,
		Resources:       resources,
		VolumeMounts:    mounts,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("admin")}},
			PeriodSeconds:    5,
			FailureThreshold: 2,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("admin")}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		Lifecycle: &corev1.Lifecycle{
			// Keep serving while the endpoint removal propagates; the pooler drains on SIGTERM.
			PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStopSeconds}},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func poolerVolumes(pool *poolingv1alpha1.ConnectionPool) []corev1.Volume {
	secretVolume := func(name, secret string, items []corev1.KeyToPath) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, Items: items, DefaultMode: ptr.To[int32](0o440),
		}}}
	}
	vols := []corev1.Volume{secretVolume("config", configSecretName(pool), nil)}
	if pool.TLSEnabled() {
		secret := tlsSecretName(pool)
		if pool.TLSMode() == poolingv1alpha1.TLSSecret {
			secret = pool.Spec.TLS.SecretName
		}
		// Only the certificate and key: the generated Secret also holds the CA key.
		vols = append(vols, secretVolume("tls", secret, []corev1.KeyToPath{
			{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey},
			{Key: corev1.TLSPrivateKeyKey, Path: corev1.TLSPrivateKeyKey},
		}))
	}
	if ca := pool.Spec.Upstream.CASecret; ca != nil {
		vols = append(vols, secretVolume("upstream-ca", ca.Name, []corev1.KeyToPath{{Key: ca.KeyOrDefault(), Path: "ca.crt"}}))
	}
	vols = append(vols, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("16Mi")),
	}}})
	return vols
}

// poolerAffinity pins pods to the region (required, or preferred with placement Preferred) on
// top of the user's affinity. Required node selector terms are ORed, so the region expression is
// added to every user term.
func poolerAffinity(pool *poolingv1alpha1.ConnectionPool) *corev1.Affinity {
	aff := &corev1.Affinity{}
	if pool.Spec.Template.Affinity != nil {
		aff = pool.Spec.Template.Affinity.DeepCopy()
	}
	if aff.NodeAffinity == nil {
		aff.NodeAffinity = &corev1.NodeAffinity{}
	}
	region := corev1.NodeSelectorRequirement{Key: regionLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{pool.Spec.Region}}
	na := aff.NodeAffinity
	if pool.RegionAffinity() == poolingv1alpha1.RegionAffinityPreferred {
		na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.PreferredSchedulingTerm{Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{region}}})
		return aff
	}
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		terms = []corev1.NodeSelectorTerm{{}}
	}
	for i := range terms {
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, region)
	}
	na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = terms
	return aff
}
