package controllers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

func TestPoolerDeployment(t *testing.T) {
	in := deploymentInputs{Image: "ghcr.io/edgepool/edgepool:v1"}
	tests := []struct {
		name   string
		mutate func(p *poolingv1alpha1.ConnectionPool)
		check  func(t *testing.T, p *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec)
	}{
		{
			name: "defaults: required region affinity, zone spread, locked down, contract command",
			check: func(t *testing.T, p *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec) {
				terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
				if len(terms) != 1 || terms[0].MatchExpressions[0].Key != regionLabel || terms[0].MatchExpressions[0].Values[0] != "eu-central-1" {
					t.Fatalf("region affinity = %+v", terms)
				}
				if len(spec.TopologySpreadConstraints) != 1 || spec.TopologySpreadConstraints[0].TopologyKey != zoneLabel {
					t.Fatalf("spread = %+v", spec.TopologySpreadConstraints)
				}
				c := spec.Containers[0]
				if !slices.Equal(c.Command, []string{"/edgepool"}) || !slices.Equal(c.Args, []string{"pooler", "--config", "/etc/edgepool/config/pooler.json"}) {
					t.Fatalf("command %v args %v", c.Command, c.Args)
				}
				sc := c.SecurityContext
				if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
					t.Fatalf("container security context %+v", sc)
				}
				if !*spec.SecurityContext.RunAsNonRoot || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || *spec.AutomountServiceAccountToken {
					t.Fatalf("pod security %+v", spec.SecurityContext)
				}
				if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
					t.Fatal("probes")
				}
				var ports []int32
				for _, p := range c.Ports {
					ports = append(ports, p.ContainerPort)
				}
				if !slices.Equal(ports, []int32{5432, 8443, 8080}) {
					t.Fatalf("ports %v", ports)
				}
				mounts := map[string]string{}
				for _, m := range c.VolumeMounts {
					mounts[m.Name] = m.MountPath
				}
				if mounts["config"] != "/etc/edgepool/config" || mounts["tls"] != "/etc/edgepool/tls" {
					t.Fatalf("mounts %v", mounts)
				}
				for _, v := range spec.Volumes {
					if v.Name == "tls" && (v.Secret.SecretName != "shop-tls" || len(v.Secret.Items) != 2) {
						t.Fatalf("tls volume must mount only tls.crt and tls.key of shop-tls: %+v", v.Secret)
					}
				}
			},
		},
		{
			name: "preferred placement",
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.Placement.RegionAffinity = poolingv1alpha1.RegionAffinityPreferred
			},
			check: func(t *testing.T, _ *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec) {
				na := spec.Affinity.NodeAffinity
				if na.RequiredDuringSchedulingIgnoredDuringExecution != nil || len(na.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Fatalf("affinity %+v", na)
				}
			},
		},
		{
			name: "user affinity terms each get the region",
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.Template.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
						{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "a", Operator: corev1.NodeSelectorOpExists}}},
						{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "b", Operator: corev1.NodeSelectorOpExists}}},
					}}}}
			},
			check: func(t *testing.T, p *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec) {
				for _, term := range spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
					if len(term.MatchExpressions) != 2 || term.MatchExpressions[1].Key != regionLabel {
						t.Fatalf("term %+v", term)
					}
				}
				if len(p.Spec.Template.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions) != 1 {
					t.Fatal("builder mutated the spec")
				}
			},
		},
		{
			name: "TLS disabled and upstream CA: no tls volume, CA mounted",
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.TLS.Mode = poolingv1alpha1.TLSDisabled
				p.Spec.Upstream.CASecret = &poolingv1alpha1.SecretKeyRef{Name: "db-ca", Key: "root.pem"}
			},
			check: func(t *testing.T, _ *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec) {
				for _, v := range spec.Volumes {
					if v.Name == "tls" {
						t.Fatal("tls volume with TLS disabled")
					}
					if v.Name == "upstream-ca" && (v.Secret.SecretName != "db-ca" || v.Secret.Items[0].Key != "root.pem" || v.Secret.Items[0].Path != "ca.crt") {
						t.Fatalf("upstream CA volume %+v", v.Secret)
					}
				}
			},
		},
		{
			name: "template overrides",
			mutate: func(p *poolingv1alpha1.ConnectionPool) {
				p.Spec.Template.Labels = map[string]string{"team": "shop", labelInstance: "evil"}
				p.Spec.Template.PriorityClassName = "high"
				p.Spec.Template.Tolerations = []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists}}
			},
			check: func(t *testing.T, p *poolingv1alpha1.ConnectionPool, spec corev1.PodSpec) {
				if spec.PriorityClassName != "high" || len(spec.Tolerations) != 1 {
					t.Fatal("overrides not applied")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			if tt.mutate != nil {
				tt.mutate(p)
			}
			d := poolerDeployment(p, in)
			ru := d.Spec.Strategy.RollingUpdate
			if *d.Spec.Replicas != 2 || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 || d.Spec.MinReadySeconds <= terminationGrace {
				t.Fatalf("replicas %d, strategy %+v, minReadySeconds %d: the budget needs no surge and minReadySeconds beyond the grace period",
					*d.Spec.Replicas, ru, d.Spec.MinReadySeconds)
			}
			l := d.Spec.Template.Labels
			if l[labelInstance] != "shop" || l[labelComponent] != componentPooler {
				t.Fatalf("pod labels %v (operator labels must win)", l)
			}
			if d.Spec.Template.Annotations[annotationRestartHash] == "" {
				t.Fatal("no restart hash")
			}
			tt.check(t, p, d.Spec.Template.Spec)
		})
	}
}

// TestOnlyRestartChangesRollPods: a change the pooler reloads live leaves the pod template as it
// is (no rollout); a restart-only change (config.RestartSettings or the pod itself) changes it.
func TestOnlyRestartChangesRollPods(t *testing.T) {
	in := deploymentInputs{Image: "img:1", Budget: budgetPlan{Replicas: 2, PoolSize: 6, TemplatePoolSize: 6}}
	template := func(p *poolingv1alpha1.ConnectionPool, in deploymentInputs) corev1.PodTemplateSpec {
		return poolerDeployment(p, in).Spec.Template
	}
	base := template(samplePool(), in)
	live := map[string]func(p *poolingv1alpha1.ConnectionPool){
		"replicas":                func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](5) },
		"budget":                  func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Pool.MaxUpstreamConnections = 99 },
		"paused":                  func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Paused = true },
		"rotation":                func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Rotation = 3 },
		"credentials Secret name": func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.CredentialsSecret.Name = "other" },
		"upstream host":           func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.Host = "other-db" },
		"upstream port":           func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.Port = 6543 },
		"upstream sslMode":        func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Upstream.SSLMode = "prefer" },
		"cache on":                func(p *poolingv1alpha1.ConnectionPool) { p.Spec.HTTP.Cache.Enabled = true },
		"cache ttl and size": func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.HTTP.Cache.DefaultTTL = &metav1.Duration{Duration: time.Minute}
			p.Spec.HTTP.Cache.MaxBytes = poolingv1alpha1.QuantityPtr("1Gi")
		},
		"timeouts": func(p *poolingv1alpha1.ConnectionPool) {
			p.Spec.Pool.QueryWaitTimeout = &metav1.Duration{Duration: time.Second}
		},
	}
	for name, m := range live {
		p := samplePool()
		m(p)
		if !equality.Semantic.DeepEqual(template(p, in), base) {
			t.Errorf("live change %q changed the pod template (it would roll the pods)", name)
		}
	}
	restart := map[string]func(p *poolingv1alpha1.ConnectionPool, in *deploymentInputs){
		"image":               func(_ *poolingv1alpha1.ConnectionPool, in *deploymentInputs) { in.Image = "img:2" },
		"certificate renewal": func(_ *poolingv1alpha1.ConnectionPool, in *deploymentInputs) { in.CertSerial = "abc" },
		"tls off": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) {
			p.Spec.TLS.Mode = poolingv1alpha1.TLSDisabled
		},
		"http off": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) { p.Spec.HTTP.Enabled = ptr.To(false) },
		"database": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) { p.Spec.Upstream.Database = "other" },
		"pool mode": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) {
			p.Spec.Pool.Mode = poolingv1alpha1.PoolModeSession
		},
		"upstream CA Secret": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) {
			p.Spec.Upstream.CASecret = &poolingv1alpha1.SecretKeyRef{Name: "ca"}
		},
		"pod resources": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) {
			p.Spec.Template.Resources = &corev1.ResourceRequirements{}
		},
		"placement preference": func(p *poolingv1alpha1.ConnectionPool, _ *deploymentInputs) {
			p.Spec.Placement.RegionAffinity = poolingv1alpha1.RegionAffinityPreferred
		},
	}
	for name, m := range restart {
		p, in2 := samplePool(), in
		m(p, &in2)
		if equality.Semantic.DeepEqual(template(p, in2), base) {
			t.Errorf("restart change %q kept the pod template (the pods would never apply it)", name)
		}
	}
}
