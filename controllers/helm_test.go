package controllers

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var updateRBAC = flag.Bool("update-rbac", false, "rewrite testdata/rbac/*.txt from what the API server answers")

const chartDir = "../charts/edgepool"

// TestChartCopiesAreFresh: the chart carries copies of what config/ generates (the CRD, the
// manager's rules) and of the dashboard; `make manifests` refreshes them. A drift fails here.
func TestChartCopiesAreFresh(t *testing.T) {
	for chart, config := range map[string]string{
		"crds/pooling.edgepool.dev_connectionpools.yaml": "../config/crd/bases/pooling.edgepool.dev_connectionpools.yaml",
		"files/manager-role.yaml":                        "../config/rbac/role.yaml",
		"files/dashboard.json":                           "../config/monitoring/grafana-dashboard.json",
	} {
		got, err := os.ReadFile(filepath.Join(chartDir, chart))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("charts/edgepool/%s differs from %s: run `make manifests` and commit", chart, strings.TrimPrefix(config, "../"))
		}
	}
}

// helmTemplate renders the chart with the given --set values.
func helmTemplate(t *testing.T, namespace string, sets ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(filepath.Join("..", "hack", "helm.sh")).Output()
	if err != nil {
		t.Fatalf("hack/helm.sh: %v", stderrOf(err))
	}
	args := []string{"template", "edgepool", chartDir, "--namespace", namespace, "--include-crds"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	rendered, err := exec.Command(strings.TrimSpace(string(out)), args...).Output()
	if err != nil {
		t.Fatalf("helm %v: %v", args, stderrOf(err))
	}
	return decodeYAML(t, rendered)
}

func decodeYAML(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				return objs
			}
			t.Fatalf("decode rendered YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func findObject(t *testing.T, objs []*unstructured.Unstructured, kind, nameSuffix string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && strings.HasSuffix(o.GetName(), nameSuffix) {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s *%s rendered", kind, nameSuffix)
}

// TestChartMatchesKustomize: the chart's manager Deployment runs what config/manager runs (command,
// args, env, ports, probes, security contexts) and its ClusterRole holds config/rbac's rules.
func TestChartMatchesKustomize(t *testing.T) {
	rendered, err := exec.Command("kubectl", "kustomize", "../config/default").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", stderrOf(err))
	}
	kustomized := decodeYAML(t, rendered)
	helm := helmTemplate(t, "edgepool-system", "image.tag=dev")

	var fromKustomize, fromHelm appsv1.Deployment
	findObject(t, kustomized, "Deployment", "controller-manager", &fromKustomize)
	findObject(t, helm, "Deployment", "edgepool", &fromHelm)
	k, h := fromKustomize.Spec.Template.Spec, fromHelm.Spec.Template.Spec
	kc, hc := k.Containers[0], h.Containers[0]
	for what, pair := range map[string][2]any{
		"image":                     {kc.Image, hc.Image},
		"command":                   {kc.Command, hc.Command},
		"args":                      {kc.Args, hc.Args},
		"env":                       {kc.Env, hc.Env},
		"ports":                     {kc.Ports, hc.Ports},
		"probes":                    {[]*corev1.Probe{kc.LivenessProbe, kc.ReadinessProbe}, []*corev1.Probe{hc.LivenessProbe, hc.ReadinessProbe}},
		"resources":                 {kc.Resources, hc.Resources},
		"container securityContext": {kc.SecurityContext, hc.SecurityContext},
		"pod securityContext":       {k.SecurityContext, h.SecurityContext},
	} {
		if !equality.Semantic.DeepEqual(pair[0], pair[1]) {
			t.Errorf("manager %s: kustomize %+v, helm %+v", what, pair[0], pair[1])
		}
	}
	var kRole, hRole rbacv1.ClusterRole
	findObject(t, kustomized, "ClusterRole", "manager-role", &kRole)
	findObject(t, helm, "ClusterRole", "-manager", &hRole)
	if !equality.Semantic.DeepEqual(sortedRules(kRole.Rules), sortedRules(hRole.Rules)) {
		t.Errorf("ClusterRole rules differ:\nkustomize %+v\nhelm      %+v", kRole.Rules, hRole.Rules)
	}
}

func sortedRules(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b rbacv1.PolicyRule) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}

// TestChartMonitoringSelectsPoolers: the PodMonitor selects the labels the operator puts on
// pooler pods and scrapes a port the pooler container declares; the ServiceMonitor selects the
// operator's metrics Service by a port it has.
func TestChartMonitoringSelectsPoolers(t *testing.T) {
	objs := helmTemplate(t, "edgepool-system", "monitoring.operatorServiceMonitor.enabled=true",
		"monitoring.poolerPodMonitor.enabled=true", "monitoring.dashboard.enabled=true")
	pod := poolerDeployment(samplePool(), deploymentInputs{Image: "img"}).Spec.Template
	var podMonitor, serviceMonitor *unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "PodMonitor":
			podMonitor = o
		case "ServiceMonitor":
			serviceMonitor = o
		}
	}
	if podMonitor == nil || serviceMonitor == nil {
		t.Fatal("monitoring enabled but no PodMonitor/ServiceMonitor rendered")
	}
	sel, _, _ := unstructured.NestedStringMap(podMonitor.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if pod.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; pooler pods carry %q", k, v, pod.Labels[k])
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(podMonitor.Object, "spec", "podMetricsEndpoints")
	port := endpoints[0].(map[string]any)["port"]
	if !slices.ContainsFunc(pod.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == port }) {
		t.Errorf("PodMonitor scrapes port %v, which the pooler container does not declare", port)
	}
	var svc corev1.Service
	findObject(t, objs, "Service", "-metrics", &svc)
	smSel, _, _ := unstructured.NestedStringMap(serviceMonitor.Object, "spec", "selector", "matchLabels")
	for k, v := range smSel {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s; the metrics Service carries %q", k, v, svc.Labels[k])
		}
	}
	var dashboard corev1.ConfigMap
	findObject(t, objs, "ConfigMap", "-dashboard", &dashboard)
	if !strings.Contains(dashboard.Data["edgepool.json"], "edgepool_servers") {
		t.Error("the dashboard ConfigMap lacks the dashboard")
	}
}

// kubectlAdmin writes a kubeconfig for an envtest admin (system:masters) and returns a kubectl
// runner that feeds stdin (when not nil) and returns the combined output.
func kubectlAdmin(t *testing.T) func(stdin []byte, args ...string) (string, error) {
	t.Helper()
	user, err := suite.env.AddUser(envtest.User{Name: "chart-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return func(stdin []byte, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", path}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if err := suite.client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestHelmTemplateAppliesToAPIServer: `helm template charts/edgepool | kubectl apply
// --dry-run=server -f -` against the envtest API server, in cluster-wide and namespaced mode.
func TestHelmTemplateAppliesToAPIServer(t *testing.T) {
	kubectl := kubectlAdmin(t)
	ensureNamespace(t, "edgepool-system")
	watched := newNamespace(t)
	for name, sets := range map[string][]string{
		"cluster-wide": nil,
		"namespaced":   {"watchNamespaces={" + watched + "}"},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, o := range helmTemplate(t, "edgepool-system", sets...) {
				raw, err := o.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				buf.Write(raw)
				buf.WriteByte('\n')
			}
			out, err := kubectl(buf.Bytes(), "apply", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// TestOperatorPermissions installs the operator's RBAC for real (config/default for the
// cluster-wide mode, the chart with watchNamespaces for the namespaced one) and lists what its
// ServiceAccount may do (`kubectl auth can-i --list --as=...`), compared with
// testdata/rbac/*.txt: widening a permission shows up in review. `go test ./controllers -run
// TestOperatorPermissions -update-rbac` rewrites the expectations.
func TestOperatorPermissions(t *testing.T) {
	kubectl := kubectlAdmin(t)
	ensureNamespace(t, "edgepool-system")
	ensureNamespace(t, "edgepool-rbac")
	for _, ns := range []string{"apps-watched", "apps-other"} {
		ensureNamespace(t, ns)
	}
	apply := func(manifests []byte) {
		t.Helper()
		if out, err := kubectl(manifests, "apply", "--server-side", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	}
	rendered, err := exec.Command("kubectl", "kustomize", "../config/default").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", stderrOf(err))
	}
	var rbacOnly bytes.Buffer
	for _, o := range decodeYAML(t, rendered) {
		if o.GetKind() == "Deployment" || o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
			continue // the permissions are all this test needs
		}
		raw, _ := o.MarshalJSON()
		rbacOnly.Write(raw)
		rbacOnly.WriteByte('\n')
	}
	apply(rbacOnly.Bytes())
	var chart bytes.Buffer
	for _, o := range helmTemplate(t, "edgepool-rbac", "watchNamespaces={apps-watched}") {
		if o.GetKind() == "Deployment" || o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		raw, _ := o.MarshalJSON()
		chart.Write(raw)
		chart.WriteByte('\n')
	}
	apply(chart.Bytes())

	for _, tt := range []struct {
		file, serviceAccount, namespace string
	}{
		{"cluster-wide.txt", "system:serviceaccount:edgepool-system:edgepool-controller-manager", "apps-other"},
		{"namespaced-watched.txt", "system:serviceaccount:edgepool-rbac:edgepool", "apps-watched"},
		{"namespaced-unwatched.txt", "system:serviceaccount:edgepool-rbac:edgepool", "apps-other"},
		{"namespaced-own-namespace.txt", "system:serviceaccount:edgepool-rbac:edgepool", "edgepool-rbac"},
	} {
		t.Run(strings.TrimSuffix(tt.file, ".txt"), func(t *testing.T) {
			out, err := kubectl(nil, "auth", "can-i", "--list", "--as", tt.serviceAccount, "-n", tt.namespace)
			if err != nil {
				t.Fatalf("kubectl auth can-i --list: %v\n%s", err, out)
			}
			got := normalizeCanI(out)
			path := filepath.Join("testdata", "rbac", tt.file)
			if *updateRBAC {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-rbac to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s in %s may do:\n%s\nexpected (%s):\n%s", tt.serviceAccount, tt.namespace, got, path, want)
			}
		})
	}
}

var spaces = regexp.MustCompile(`\s+`)

// normalizeCanI turns kubectl's table into one sorted line per rule with single spaces.
func normalizeCanI(out string) string {
	var lines []string
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 0 || strings.TrimSpace(l) == "" {
			continue // the header
		}
		lines = append(lines, spaces.ReplaceAllString(strings.TrimSpace(l), " "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}
