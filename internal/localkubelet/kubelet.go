// Package localkubelet plays the kubelet's part (and the deployment controller's, kube-proxy's
// and the garbage collector's, as far as edgepool's tests need them) against a control plane
// that has none, such as envtest: every replica of a watched Deployment runs as a local
// process.
//
// Per replica it
//   - writes the pod's Secret and ConfigMap volumes to a temp dir with the kubelet's layout
//     (timestamped version dir, `..data` symlink swapped atomically on change), so a process
//     that reloads its mounted files sees updates as it would in a pod;
//   - starts the container's command and args with its env (literal, secretKeyRef,
//     configMapKeyRef, fieldRef, envFrom), mapping the command through Options.Commands
//     (e.g. "/edgepool" → bin/edgepool);
//   - probes the readiness probe and restarts the process when it exits or fails its
//     liveness probe.
//
// A pod's mount paths and ports cannot be a local process's (every replica would listen on
// :5432), so the harness rewrites, in the argv, the environment and JSON volume files it
// hands to the process, mount paths to the local directories and wildcard listen addresses
// on container ports to per-replica loopback ports. Every rewrite is logged. The API objects
// are never changed: what the operator wrote stays what it wrote.
//
// Per Deployment it writes status (replicas, updated/ready/available replicas,
// observedGeneration, Available and Progressing conditions), rolls replicas when the pod
// template changes (new replicas first, old ones stopped once the new ones are ready), and
// stops replicas on scale-down and deletion. Per Service with a selector it listens on a
// loopback port per service port and forwards TCP connections round-robin to the ready
// replicas (ServiceAddr). Optionally it registers a Node and deletes objects whose owners are
// gone (envtest runs no garbage collector).
package localkubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configure a Kubelet.
type Options struct {
	// Commands maps a container's command[0] (a path inside the image) to a local executable.
	// Only Deployments whose first container's command[0] is a key here are run.
	Commands map[string]string
	// Selector, when set, further limits the Deployments run to those whose labels match.
	Selector labels.Selector
	// Namespace, when set, limits everything to one namespace.
	Namespace string
	// WorkDir holds the replicas' volumes and logs; a temp dir when empty. It is removed by
	// Stop only when the harness created it.
	WorkDir string
	// Log receives the harness's own log, including every rewrite; slog.Default() when nil.
	Log *slog.Logger
	// Node, when set, is registered as a Ready Node with these labels (for example
	// topology.kubernetes.io/region), so that a controller checking for nodes in a region
	// finds one. Pods are not scheduled through it: every replica runs here.
	Node *NodeOptions
	// GarbageCollect deletes Deployments, Services, Secrets, ConfigMaps and
	// PodDisruptionBudgets whose owners (ownerReferences) no longer exist, as the garbage
	// collector of kube-controller-manager would.
	GarbageCollect bool
	// ProbePeriod is how often readiness is probed; 250ms when zero. The pod's own periods
	// are not honoured (tests want to see readiness quickly); failure thresholds are.
	ProbePeriod time.Duration
	// MaxTerminationGrace caps a pod's terminationGracePeriodSeconds; 15s when zero.
	MaxTerminationGrace time.Duration
}

// NodeOptions describe the Node the harness registers.
type NodeOptions struct {
	Name   string
	Labels map[string]string
}

// Kubelet runs the replicas of watched Deployments as local processes. Create it with Start;
// Stop ends every process it started.
type Kubelet struct {
	opts    Options
	log     *slog.Logger
	cache   cache.Cache
	client  client.Client // direct (uncached) client for writes and owner lookups
	workDir string
	ownsDir bool

	poke   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	pods     map[types.NamespacedName][]*pod // by Deployment
	services map[types.NamespacedName]*serviceProxy
	lastGC   time.Time
	gcPasses atomic.Int64 // garbage collection passes done (tests wait on it)

	portsMu sync.Mutex
	ports   map[int]bool // loopback ports handed out and not yet released

	loggedMinReady atomic.Bool
}

// Start builds a Kubelet against the cluster at cfg, waits for its caches to sync and runs it
// in the background until Stop (or until ctx ends, after which Stop still must be called to
// wait for the processes to exit).
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*Kubelet, error) {
	if len(opts.Commands) == 0 {
		return nil, errors.New("localkubelet: Options.Commands is empty: nothing could be run")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.ProbePeriod == 0 {
		opts.ProbePeriod = 250 * time.Millisecond
	}
	if opts.MaxTerminationGrace == 0 {
		opts.MaxTerminationGrace = 15 * time.Second
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	k := &Kubelet{
		opts:     opts,
		log:      opts.Log.With("component", "localkubelet"),
		workDir:  opts.WorkDir,
		poke:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		pods:     map[types.NamespacedName][]*pod{},
		services: map[types.NamespacedName]*serviceProxy{},
		ports:    map[int]bool{},
	}
	if k.workDir == "" {
		dir, err := os.MkdirTemp("", "localkubelet-")
		if err != nil {
			return nil, err
		}
		k.workDir, k.ownsDir = dir, true
	}
	cacheOpts := cache.Options{Scheme: scheme}
	if opts.Namespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{opts.Namespace: {}}
	}
	var err error
	if k.cache, err = cache.New(cfg, cacheOpts); err != nil {
		return nil, fmt.Errorf("localkubelet: cache: %w", err)
	}
	if k.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, fmt.Errorf("localkubelet: client: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	k.cancel = cancel
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Secret{}, &corev1.ConfigMap{},
		&corev1.Service{}, &policyv1.PodDisruptionBudget{}} {
		inf, err := k.cache.GetInformer(runCtx, obj)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("localkubelet: informer: %w", err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { k.trigger() },
			UpdateFunc: func(any, any) { k.trigger() },
			DeleteFunc: func(any) { k.trigger() },
		}); err != nil {
			cancel()
			return nil, err
		}
	}
	go func() { _ = k.cache.Start(runCtx) }()
	syncCtx, syncCancel := context.WithTimeout(runCtx, 30*time.Second)
	defer syncCancel()
	if !k.cache.WaitForCacheSync(syncCtx) {
		cancel()
		return nil, errors.New("localkubelet: caches did not sync")
	}
	if opts.Node != nil {
		if err := k.registerNode(runCtx, *opts.Node); err != nil {
			cancel()
			return nil, err
		}
	}
	k.log.Info("started", "workDir", k.workDir, "commands", opts.Commands)
	go k.loop(runCtx)
	return k, nil
}

// Stop stops every replica process and Service forwarder and waits for the processes to exit.
func (k *Kubelet) Stop() {
	k.cancel()
	<-k.done
	if k.ownsDir {
		_ = os.RemoveAll(k.workDir)
	}
}

// WorkDir is where the replicas' volumes and logs are.
func (k *Kubelet) WorkDir() string { return k.workDir }

func (k *Kubelet) trigger() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

func (k *Kubelet) loop(ctx context.Context) {
	defer close(k.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		k.sync(ctx)
		select {
		case <-ctx.Done():
			k.shutdown()
			return
		case <-k.poke:
		case <-tick.C:
		}
	}
}

// shutdown stops everything and waits for the processes to exit.
func (k *Kubelet) shutdown() {
	k.mu.Lock()
	var all []*pod
	for key, pods := range k.pods {
		all = append(all, pods...)
		delete(k.pods, key)
	}
	for key, svc := range k.services {
		svc.close()
		delete(k.services, key)
	}
	k.mu.Unlock()
	for _, p := range all {
		p.stop("harness stopping")
	}
	for _, p := range all {
		<-p.exited
	}
	k.log.Info("stopped", "replicas", len(all))
}

func (k *Kubelet) sync(ctx context.Context) {
	var deps appsv1.DeploymentList
	if err := k.cache.List(ctx, &deps); err != nil {
		if ctx.Err() == nil {
			k.log.Error("list deployments", "err", err)
		}
		return
	}
	seen := map[types.NamespacedName]bool{}
	for i := range deps.Items {
		d := &deps.Items[i]
		if !k.manages(d) {
			continue
		}
		key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
		seen[key] = true
		k.syncDeployment(ctx, d)
	}
	k.mu.Lock()
	for key, pods := range k.pods {
		if seen[key] {
			continue
		}
		for _, p := range pods {
			p.stop("deployment deleted")
		}
		k.pods[key] = removeExited(pods)
		if len(k.pods[key]) == 0 {
			delete(k.pods, key)
		}
	}
	k.mu.Unlock()
	k.syncServices(ctx)
	if k.opts.GarbageCollect && time.Since(k.lastGC) > time.Second {
		k.lastGC = time.Now()
		k.collectGarbage(ctx)
		k.gcPasses.Add(1)
	}
}

func (k *Kubelet) manages(d *appsv1.Deployment) bool {
	if k.opts.Namespace != "" && d.Namespace != k.opts.Namespace {
		return false
	}
	if k.opts.Selector != nil && !k.opts.Selector.Matches(labels.Set(d.Labels)) {
		return false
	}
	cs := d.Spec.Template.Spec.Containers
	if len(cs) == 0 || len(cs[0].Command) == 0 {
		return false
	}
	_, ok := k.opts.Commands[cs[0].Command[0]]
	return ok
}

// templateHash identifies a pod template version, as the pod-template-hash label does.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil { // a PodTemplateSpec always marshals; keep a stable fallback all the same
		b = fmt.Appendf(nil, "%#v", t)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

func removeExited(pods []*pod) []*pod {
	out := pods[:0]
	for _, p := range pods {
		select {
		case <-p.exited:
			continue
		default:
			out = append(out, p)
		}
	}
	return out
}
