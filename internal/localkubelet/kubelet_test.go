package localkubelet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/edgepool/edgepool/internal/testutil"
)

var (
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	if os.Getenv(fakePoolerEnv) == "1" {
		runFakePooler()
		return
	}
	os.Exit(runWithEnvtest(m))
}

func runWithEnvtest(m *testing.M) int {
	assets, err := testutil.EnvtestAssets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest binaries:", err)
		return 1
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restConfig = cfg
	if k8s, err = client.New(cfg, client.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startKubelet runs the harness for one test in its own namespace, with the test binary as
// the container's executable.
func startKubelet(t *testing.T, opts Options) (*Kubelet, string) {
	t.Helper()
	ns := fmt.Sprintf("t%d", time.Now().UnixNano()%1_000_000_000)
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Commands = map[string]string{"/edgepool": self}
	opts.Namespace = ns
	opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	k, err := Start(context.Background(), restConfig, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Stop()
	})
	return k, ns
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

const poolerConfig = `{"listen":{"postgres":":5432","admin":":8080"},"tls":{"certFile":"/etc/edgepool/tls/tls.crt","keyFile":"/etc/edgepool/tls/tls.key"},"upstream":{"host":"db.example","port":5432,"password":"%s"}}`

// poolerObjects are what the operator makes for a pool, shaped like its contract: config and
// TLS Secrets mounted into a Deployment running /edgepool pooler --config …, and a Service.
func poolerObjects(ns string, replicas int32, password string) (*corev1.Secret, *corev1.Secret, *appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "pooler"}
	cfg := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-pooler-config", Namespace: ns},
		Data: map[string][]byte{"pooler.json": fmt.Appendf(nil, poolerConfig, password)}}
	tlsSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-tls", Namespace: ns},
		Data: map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY"), "ca.crt": []byte("CA")}}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-pooler", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(5)),
					Containers: []corev1.Container{{
						Name:    "pooler",
						Image:   "ghcr.io/edgepool/edgepool:dev",
						Command: []string{"/edgepool"},
						Args:    []string{"pooler", "--config", "/etc/edgepool/config/pooler.json"},
						Env: []corev1.EnvVar{
							{Name: fakePoolerEnv, Value: "1"},
							{Name: "GREETING", Value: "hello"},
							{Name: "TLS_DIR", Value: "/etc/edgepool/tls"},
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "shop-tls"}, Key: "ca.crt"}}},
						},
						Ports: []corev1.ContainerPort{
							{Name: "postgres", ContainerPort: 5432},
							{Name: "admin", ContainerPort: 8080},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/readyz", Port: intstr.FromString("admin")}}, FailureThreshold: 1},
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/healthz", Port: intstr.FromInt32(8080)}}},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/edgepool/config", ReadOnly: true},
							{Name: "tls", MountPath: "/etc/edgepool/tls", ReadOnly: true},
							{Name: "upstream-ca", MountPath: "/etc/edgepool/upstream-ca", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "shop-pooler-config"}}},
						{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "shop-tls", DefaultMode: ptr.To(int32(0o600))}}},
						{Name: "upstream-ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "shop-db-ca", Optional: ptr.To(true)}}},
					},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-pooler", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "postgres", Port: 5432, TargetPort: intstr.FromString("postgres")},
			{Name: "admin", Port: 8080, TargetPort: intstr.FromInt32(8080)},
		}},
	}
	return cfg, tlsSecret, dep, svc
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func deploymentStatus(t *testing.T, ns string) appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop-pooler"}, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func waitAvailable(t *testing.T, ns string, replicas int32) appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	testutil.EventuallyNoError(t, "deployment available", 30*time.Second, func() error {
		d = deploymentStatus(t, ns)
		s := d.Status
		if s.ObservedGeneration != d.Generation || s.AvailableReplicas != replicas || s.UpdatedReplicas != replicas ||
			s.Replicas != replicas || s.ReadyReplicas != replicas {
			return fmt.Errorf("status %+v (generation %d)", s, d.Generation)
		}
		for _, c := range s.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("no Available=True condition: %+v", s.Conditions)
	})
	return d
}

func info(t *testing.T, p Pod) fakeInfo {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/info", p.Ports[8080]))
	if err != nil {
		t.Fatalf("info of %s: %v\n%s", p.Name, err, p.Log())
	}
	defer resp.Body.Close()
	var fi fakeInfo
	if err := json.NewDecoder(resp.Body).Decode(&fi); err != nil {
		t.Fatal(err)
	}
	return fi
}

func alive(pid int) bool {
	if pid == 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is not alive: the harness reaps its children, so this only guards the test.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func runningPods(k *Kubelet, ns string) []Pod {
	var out []Pod
	for _, p := range k.Pods(ns, "shop-pooler") {
		if !p.Terminating {
			out = append(out, p)
		}
	}
	return out
}

func TestReplicasRunWithRewrittenPathsAndPorts(t *testing.T) {
	k, ns := startKubelet(t, Options{})
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 2, "pw1")
	create(t, cfg, tlsSecret, dep, svc)
	waitAvailable(t, ns, 2)

	pods := runningPods(k, ns)
	if len(pods) != 2 {
		t.Fatalf("pods = %+v", pods)
	}
	for _, p := range pods {
		fi := info(t, p)
		var got struct {
			Listen struct{ Postgres, Admin string }
			TLS    struct{ CertFile string }
		}
		if err := json.Unmarshal(fi.Config, &got); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("127.0.0.1:%d", p.Ports[5432]); got.Listen.Postgres != want {
			t.Errorf("%s listen.postgres = %q, want %q", p.Name, got.Listen.Postgres, want)
		}
		certFile := filepath.Join(p.Dir, "volumes", "tls", "tls.crt")
		if got.TLS.CertFile != certFile {
			t.Errorf("tls.certFile = %q, want %q", got.TLS.CertFile, certFile)
		}
		if b, err := os.ReadFile(certFile); err != nil || string(b) != "CERT" {
			t.Errorf("cert file: %q %v", b, err)
		}
		if fi.Args[2] != filepath.Join(p.Dir, "volumes", "config", "pooler.json") {
			t.Errorf("args = %q", fi.Args)
		}
		if fi.Env["GREETING"] != "hello" || fi.Env["POD_NAME"] != p.Name || fi.Env["FROM_SECRET"] != "CA" ||
			fi.Env["TLS_DIR"] != filepath.Join(p.Dir, "volumes", "tls") {
			t.Errorf("env = %v", fi.Env)
		}
	}
	// What the operator wrote is untouched.
	var stored corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(cfg), &stored); err != nil {
		t.Fatal(err)
	}
	if string(stored.Data["pooler.json"]) != fmt.Sprintf(poolerConfig, "pw1") {
		t.Errorf("config Secret changed: %s", stored.Data["pooler.json"])
	}

	// The Service forwards round-robin to both replicas.
	addr, err := k.WaitServiceAddr(context.Background(), ns, "shop-pooler", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if byNumber, _ := k.ServiceAddr(ns, "shop-pooler", "5432"); byNumber != addr {
		t.Errorf("by number %q, by name %q", byNumber, addr)
	}
	seen := map[string]bool{}
	for range 4 {
		seen[readLine(t, addr)] = true
	}
	for _, p := range pods {
		if !seen[strconv.Itoa(p.PID)] {
			t.Errorf("service never reached %s (pid %d); saw %v", p.Name, p.PID, seen)
		}
	}
}

func readLine(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

func TestSecretUpdateReachesFilesWithoutRestart(t *testing.T) {
	k, ns := startKubelet(t, Options{})
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 1, "pw1")
	create(t, cfg, tlsSecret, dep, svc)
	waitAvailable(t, ns, 1)
	p := runningPods(k, ns)[0]
	dataBefore, _ := os.Readlink(filepath.Join(p.Dir, "volumes", "config", "..data"))

	cfg.Data["pooler.json"] = fmt.Appendf(nil, poolerConfig, "pw2")
	if err := k8s.Update(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "config file updated", 10*time.Second, func() error {
		if fi := info(t, p); !strings.Contains(string(fi.Config), "pw2") {
			return fmt.Errorf("config still %s", fi.Config)
		}
		return nil
	})
	dataAfter, _ := os.Readlink(filepath.Join(p.Dir, "volumes", "config", "..data"))
	if dataBefore == dataAfter || !strings.HasPrefix(dataAfter, "..") {
		t.Errorf("..data %q → %q: not swapped", dataBefore, dataAfter)
	}
	now := runningPods(k, ns)
	if len(now) != 1 || now[0].PID != p.PID || now[0].Restarts != 0 {
		t.Errorf("process restarted: before %+v, now %+v", p, now)
	}
}

func TestScaleRollAndDelete(t *testing.T) {
	k, ns := startKubelet(t, Options{})
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 1, "pw1")
	create(t, cfg, tlsSecret, dep, svc)
	waitAvailable(t, ns, 1)

	setReplicas := func(n int32) {
		t.Helper()
		d := deploymentStatus(t, ns)
		d.Spec.Replicas = ptr.To(n)
		if err := k8s.Update(context.Background(), &d); err != nil {
			t.Fatal(err)
		}
	}
	setReplicas(3)
	waitAvailable(t, ns, 3)
	three := runningPods(k, ns)
	if len(three) != 3 {
		t.Fatalf("pods = %+v", three)
	}
	ports := map[int]bool{}
	for _, p := range three {
		if !alive(p.PID) {
			t.Errorf("%s pid %d not running", p.Name, p.PID)
		}
		ports[p.Ports[5432]] = true
	}
	if len(ports) != 3 {
		t.Errorf("replicas share ports: %v", ports)
	}

	setReplicas(1)
	waitAvailable(t, ns, 1)
	testutil.EventuallyNoError(t, "scaled-down processes gone", 10*time.Second, func() error {
		for _, p := range three[1:] {
			if alive(p.PID) {
				return fmt.Errorf("%s pid %d still running", p.Name, p.PID)
			}
		}
		return nil
	})
	if !alive(three[0].PID) {
		t.Errorf("replica 0 stopped on scale-down")
	}

	// A pod template change rolls the replica: new process first, old one stopped after.
	d := deploymentStatus(t, ns)
	d.Spec.Template.Annotations = map[string]string{"edgepool.dev/config-hash": "abc"}
	if err := k8s.Update(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "rolled", 20*time.Second, func() error {
		pods := runningPods(k, ns)
		if len(pods) != 1 || pods[0].TemplateHash == three[0].TemplateHash || !pods[0].Ready {
			return fmt.Errorf("pods %+v", pods)
		}
		if alive(three[0].PID) {
			return fmt.Errorf("old pid %d still running", three[0].PID)
		}
		return nil
	})
	waitAvailable(t, ns, 1)

	rolled := runningPods(k, ns)[0]

	if err := k8s.Delete(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "processes gone after delete", 20*time.Second, func() error {
		if alive(rolled.PID) {
			return fmt.Errorf("pid %d still running", rolled.PID)
		}
		if pods := k.Pods(ns, "shop-pooler"); len(pods) != 0 {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
}

func TestReadinessAndMissingSecret(t *testing.T) {
	k, ns := startKubelet(t, Options{})
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 1, "pw1")
	// NOT_READY_FILE is relative to the process's working directory, the replica's dir.
	c := &dep.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "NOT_READY_FILE", Value: "not-ready"})
	create(t, dep, svc) // Secrets missing: the replica waits
	testutil.EventuallyNoError(t, "replica waiting for its secrets", 10*time.Second, func() error {
		pods := k.Pods(ns, "shop-pooler")
		if len(pods) != 1 || pods[0].PID != 0 || !strings.Contains(pods[0].Waiting, "shop-pooler-config") {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	testutil.EventuallyNoError(t, "status of a waiting replica", 10*time.Second, func() error {
		d := deploymentStatus(t, ns)
		if s := d.Status; s.ObservedGeneration != d.Generation || s.AvailableReplicas != 0 || s.Replicas != 1 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	create(t, cfg, tlsSecret)
	waitAvailable(t, ns, 1)
	p := runningPods(k, ns)[0]
	if err := os.WriteFile(filepath.Join(p.Dir, "not-ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "unready reported", 10*time.Second, func() error {
		d := deploymentStatus(t, ns)
		if d.Status.ReadyReplicas != 0 || d.Status.AvailableReplicas != 0 {
			return fmt.Errorf("status %+v", d.Status)
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionFalse {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", d.Status.Conditions)
	})
	// An unready replica gets no Service traffic.
	addr, _ := k.WaitServiceAddr(context.Background(), ns, "shop-pooler", "postgres")
	if got := readLine(t, addr); got != "" {
		t.Errorf("unready replica served %q", got)
	}
	_ = os.Remove(filepath.Join(p.Dir, "not-ready"))
	waitAvailable(t, ns, 1)
	if got := readLine(t, addr); got != strconv.Itoa(p.PID) {
		t.Errorf("service answered %q, want pid %d", got, p.PID)
	}
}

func TestCrashedProcessRestarts(t *testing.T) {
	k, ns := startKubelet(t, Options{})
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 1, "pw1")
	create(t, cfg, tlsSecret, dep, svc)
	waitAvailable(t, ns, 1)
	p := runningPods(k, ns)[0]
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "restarted", 15*time.Second, func() error {
		pods := runningPods(k, ns)
		if len(pods) != 1 || pods[0].PID == p.PID || pods[0].Restarts != 1 || !pods[0].Ready {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	waitAvailable(t, ns, 1)
}

func TestGarbageCollectionAndNode(t *testing.T) {
	k, ns := startKubelet(t, Options{GarbageCollect: true,
		Node: &NodeOptions{Name: "local-" + strconv.Itoa(int(time.Now().UnixNano()%100000)), Labels: map[string]string{"topology.kubernetes.io/region": "eu-central-1"}}})
	var node corev1.Node
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: k.opts.Node.Name}, &node); err != nil {
		t.Fatal(err)
	}
	if node.Labels["topology.kubernetes.io/region"] != "eu-central-1" || len(node.Status.Conditions) == 0 ||
		node.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Errorf("node %+v", node)
	}

	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: ns}}
	create(t, owner)
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}
	cfg, tlsSecret, dep, svc := poolerObjects(ns, 1, "pw1")
	for _, o := range []client.Object{cfg, tlsSecret, dep, svc} {
		o.SetOwnerReferences([]metav1.OwnerReference{ref})
	}
	unowned := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unowned", Namespace: ns}}
	create(t, cfg, tlsSecret, dep, svc, unowned)
	waitAvailable(t, ns, 1)
	// Two more collection passes: at least one of them ran whole with the owner present.
	passes := k.gcPasses.Load()
	testutil.Eventually(t, "a garbage collection pass with the owner present", 10*time.Second, func() bool {
		return k.gcPasses.Load() >= passes+2
	})
	p := runningPods(k, ns)[0]

	if err := k8s.Delete(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNoError(t, "children collected and processes stopped", 20*time.Second, func() error {
		for _, o := range []client.Object{cfg, tlsSecret, dep, svc} {
			err := k8s.Get(context.Background(), client.ObjectKeyFromObject(o), o)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%w)", o, o.GetName(), err)
			}
		}
		if alive(p.PID) {
			return fmt.Errorf("pid %d still running", p.PID)
		}
		if _, ok := k.ServiceAddr(ns, "shop-pooler", "postgres"); ok {
			return fmt.Errorf("service still mapped")
		}
		return nil
	})
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(unowned), unowned); err != nil {
		t.Errorf("unowned secret: %v", err)
	}
}
