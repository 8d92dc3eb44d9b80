package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/controllers"
)

// runManager runs the operator: the ConnectionPool controller with leader election, health
// probes and a metrics endpoint.
func runManager(args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	metricsAddr := fs.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables)")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader so only one replica reconciles")
	leaderNamespace := fs.String("leader-election-namespace", "", "namespace of the leader election lease (default: the pod's namespace)")
	image := fs.String("pooler-image", os.Getenv("EDGEPOOL_IMAGE"), "default pooler image (env EDGEPOOL_IMAGE; normally the operator's own image)")
	namespaces := fs.String("namespaces", os.Getenv("WATCH_NAMESPACES"), "comma-separated namespaces to watch (env WATCH_NAMESPACES; empty: all)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *image == "" {
		return errors.New("--pooler-image (or EDGEPOOL_IMAGE) is required: the pooler runs the operator's own image")
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(poolingv1alpha1.AddToScheme(scheme))

	watched := splitNamespaces(*namespaces)
	cacheOpts := controllers.CacheOptions(watched)

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("find the cluster (KUBECONFIG or in-cluster config): %w", err)
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "edgepool-operator.pooling.edgepool.dev",
		LeaderElectionNamespace: *leaderNamespace,
		// The manager exits right after losing the lease; releasing it on shutdown lets the
		// next replica take over without waiting for the lease to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	r := controllers.NewReconciler(mgr.GetClient(), mgr.GetEventRecorder("edgepool-operator"), *image)
	r.Namespaces = watched
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting manager", "poolerImage", *image, "namespaces", *namespaces, "leaderElection", *leaderElect)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func splitNamespaces(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
