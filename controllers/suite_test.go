package controllers

// The envtest suite: a real kube-apiserver and etcd (built from the Go module proxy by
// hack/envtest-binaries.sh), the reconciler running in a real manager, and a real PostgreSQL
// (internal/testpg) as the upstream. There is no kube-controller-manager: tests play the
// Deployment controller's part by writing the Deployment status.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
)

const testImage = "ghcr.io/edgepool/edgepool:test"

// suite is shared by the envtest tests of this package.
var suite struct {
	env        *envtest.Environment
	cfg        *rest.Config
	client     client.Client // uncached, straight to the API server
	reconciler *Reconciler
	mgrClient  client.Client // the manager's cached client
	pg         *testpg.Server
	// tlsPG serves TLS only, with a certificate for "localhost" alone (so 127.0.0.1 is a wrong
	// host name for verify-full); its CA is tlsPG.CACert.
	tlsPG     *testpg.Server
	nsCounter atomic.Int64
	logs      testutil.SyncBuffer
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	// Every log line of the operator goes to suite.logs (and to stderr with EDGEPOOL_TEST_LOG=1),
	// at full verbosity, so tests can check that no secret is ever logged.
	var sink io.Writer = &suite.logs
	if os.Getenv("EDGEPOOL_TEST_LOG") != "" {
		sink = io.MultiWriter(&suite.logs, os.Stderr)
	}
	log.SetLogger(zap.New(zap.WriteTo(sink), zap.Level(zapcore.Level(-10))))
	assets, err := testutil.EnvtestAssets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest binaries:", err)
		return 1
	}
	pg, err := testpg.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
		return 1
	}
	defer pg.Close()
	suite.pg = pg
	tlsPG, err := testpg.New(testpg.WithTLS("localhost"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start TLS PostgreSQL:", err)
		return 1
	}
	defer tlsPG.Close()
	suite.tlsPG = tlsPG

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(poolingv1alpha1.AddToScheme(scheme))

	suite.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	// etcd is throwaway here: without an fsync per write the suite measures the operator, not
	// the disk of a machine shared with other builds (TestTwoHundredPools).
	suite.env.ControlPlane.Etcd = &envtest.Etcd{}
	suite.env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	cfg, err := suite.env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = suite.env.Stop() }()
	// As ctrl.GetConfig does for the real manager: no client-side rate limit (the API server's
	// priority and fairness protects it). client-go's default of 5 requests/s would make the
	// suite measure its own throttle (TestTwoHundredPools).
	cfg.QPS = -1
	suite.cfg = cfg
	if suite.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// One node in the test region; pools elsewhere report NoNodeInRegion.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge-node-1", Labels: map[string]string{regionLabel: "eu-central-1"}}}
	if err := suite.client.Create(context.Background(), node); err != nil {
		fmt.Fprintln(os.Stderr, "create node:", err)
		return 1
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(nil),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suite.reconciler = NewReconciler(mgr.GetClient(), mgr.GetEventRecorder("edgepool-operator"), testImage)
	suite.reconciler.upstream.Timeout = 3 * time.Second
	suite.mgrClient = mgr.GetClient()
	if err := suite.reconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// newNamespace makes a namespace for one test, so tests do not see each other's objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", suite.nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := suite.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// credentialsSecret holds the test PostgreSQL's superuser credentials (or a wrong password).
func credentialsSecret(ns, name, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		StringData: map[string]string{"username": suite.pg.User, "password": password},
	}
}

// testPool is a pool pointing at the test PostgreSQL.
func testPool(ns, name string) *poolingv1alpha1.ConnectionPool {
	replicas := int32(2)
	return &poolingv1alpha1.ConnectionPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: poolingv1alpha1.ConnectionPoolSpec{
			Region: "eu-central-1",
			Upstream: poolingv1alpha1.Upstream{
				Host: suite.pg.Host, Port: int32(suite.pg.Port), Database: "postgres", SSLMode: "disable",
				CredentialsSecret: poolingv1alpha1.CredentialsSecretRef{Name: name + "-db"},
			},
			Replicas: &replicas,
			APIKeys:  []poolingv1alpha1.APIKey{{Name: "default"}, {Name: "ci"}},
		},
	}
}

// createPool creates the credentials Secret and the pool.
func createPool(t *testing.T, pool *poolingv1alpha1.ConnectionPool) *poolingv1alpha1.ConnectionPool {
	t.Helper()
	ctx := context.Background()
	if err := suite.client.Create(ctx, credentialsSecret(pool.Namespace, pool.Spec.Upstream.CredentialsSecret.Name, suite.pg.Password)); err != nil {
		t.Fatalf("create credentials: %v", err)
	}
	if err := suite.client.Create(ctx, pool); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	return pool
}

// getPool reads the pool from the API server.
func getPool(t *testing.T, ns, name string) *poolingv1alpha1.ConnectionPool {
	t.Helper()
	p := &poolingv1alpha1.ConnectionPool{}
	if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatalf("get pool: %v", err)
	}
	return p
}
