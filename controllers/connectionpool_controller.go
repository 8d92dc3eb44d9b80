// Package controllers holds the ConnectionPool reconciler. Files are split by concern:
// resources_*.go build desired children (pure functions), keys.go plans API keys and
// rotations, tls.go the generated certificate, upstream.go the reachability check, status.go
// the status, apply.go the writes, watches.go what triggers a reconcile.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/pooler/apikey"
)

// +kubebuilder:rbac:groups=pooling.edgepool.dev,resources=connectionpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=pooling.edgepool.dev,resources=connectionpools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=pooling.edgepool.dev,resources=connectionpools/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler keeps a ConnectionPool's children in shape and reports its status.
type Reconciler struct {
	// Client reads from the manager's cache, which holds only the Secrets the operator owns
	// (CacheOptions), and writes to the API server.
	Client client.Client
	// Reader reads the API server directly: the user's Secrets a pool references are read
	// through it, never cached (SetupWithManager sets it to the manager's API reader).
	Reader   client.Reader
	Recorder recorder.EventRecorder
	// Namespaces are the namespaces watched (empty: all), as in the manager's CacheOptions.
	Namespaces []string
	// PoolerImage is the default pooler image (the operator's own).
	PoolerImage string
	// Now is the clock; tests move it to end grace periods.
	Now func() time.Time

	keys     keySource
	applied  appliedMarks     // children applied and unchanged since (apply.go)
	upstream *upstreamChecker // one attempt (upstream.go)
	checks   *upstreamChecks  // when attempts run, and their results (upstream_checks.go)
}

// NewReconciler returns a Reconciler with real key generation and upstream checks.
func NewReconciler(c client.Client, rec recorder.EventRecorder, poolerImage string) *Reconciler {
	r := &Reconciler{Client: c, Recorder: rec, PoolerImage: poolerImage, Now: time.Now,
		keys: randomKeys, upstream: newUpstreamChecker()}
	r.checks = newUpstreamChecks(func(ctx context.Context, t upstreamTarget) upstreamResult {
		return r.upstream.try(ctx, t)
	})
	return r
}

// run is the state of one reconcile: inputs gathered, children written, problems met.
type run struct {
	pool *poolingv1alpha1.ConnectionPool
	now  time.Time

	creds      *upstreamCredentials // nil when the credentials Secret is unusable
	upstreamCA []byte
	clientCA   []byte
	certSerial string
	keys       []keyMaterial

	budget budgetPlan

	obs observations
	// requeueAt is the earliest time something is due (grace period end, renewal, re-check).
	requeueAt time.Time
}

func (r *run) due(t time.Time) {
	if !t.IsZero() && (r.requeueAt.IsZero() || t.Before(r.requeueAt)) {
		r.requeueAt = t
	}
}

func (r *run) problem(p problem) { r.obs.Problems = append(r.obs.Problems, p) }

// Reconcile runs the steps: get → read inputs → ensure TLS → ensure keys → ensure config → ensure workload →
// check upstream → write status (once, only when changed) → requeue when something is due.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	pool := &poolingv1alpha1.ConnectionPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.checks.Forget(req.NamespacedName)
			r.applied.forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if !pool.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil // owner references clean the children up
	}

	st := &run{pool: pool, now: r.Now().UTC().Truncate(time.Second)}
	steps := []struct {
		name string
		fn   func(context.Context, *run) error
	}{
		{"read inputs", r.readInputs},
		{"plan budget", r.planBudget},
		{"ensure TLS", r.ensureTLS},
		{"ensure API keys", r.ensureKeys},
		{"ensure config", r.ensureConfig},
		{"ensure workload", r.ensureWorkload},
		{"check upstream", r.checkUpstream},
	}
	var stepErr error
	for _, s := range steps {
		if err := s.fn(ctx, st); err != nil {
			var conflict *errNameConflict
			if errors.As(err, &conflict) {
				st.problem(problem{Reason: ReasonNameConflict, Message: conflict.Error()})
				continue
			}
			stepErr = fmt.Errorf("%s: %w", s.name, err)
			if !isCacheLag(err) {
				st.problem(problem{Reason: ReasonReconcileError, Message: stepErr.Error(), Terminal: errors.Is(err, reconcile.TerminalError(nil))})
			}
			break
		}
	}

	if err := r.writeStatus(ctx, pool, computeStatus(pool, st.obs, stepErr == nil)); err != nil {
		stepErr = errors.Join(stepErr, fmt.Errorf("write status: %w", err))
	}
	if stepErr != nil && isCacheLag(stepErr) {
		// The cache was behind the API server (the pool or a child changed meanwhile): the
		// event that changed it queues another reconcile; look again shortly in any case.
		logger.V(1).Info("cache behind the API server; retrying", "error", stepErr.Error())
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	if stepErr != nil {
		logger.V(1).Info("reconcile step failed", "error", stepErr.Error())
		return reconcile.Result{}, stepErr
	}
	if len(st.obs.Problems) > 0 {
		// Problems outside the pool's watches (a foreign object going away) are re-checked.
		st.due(st.now.Add(time.Minute))
	}
	if st.requeueAt.IsZero() {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{RequeueAfter: max(time.Second, st.requeueAt.Sub(r.Now()))}, nil
}

// isCacheLag reports errors that only mean a read came from a stale cache: optimistic
// concurrency conflicts and creates of objects the cache has not seen yet.
func isCacheLag(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
}

// readInputs reads the user's Secrets the pool references and the nodes of its region.
func (r *Reconciler) readInputs(ctx context.Context, st *run) error {
	pool := st.pool
	ref := pool.Spec.Upstream.CredentialsSecret
	creds := &corev1.Secret{}
	err := r.Reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: ref.Name}, creds)
	switch {
	case apierrors.IsNotFound(err):
		st.problem(problem{Reason: ReasonCredentialsSecretMissing,
			Message: fmt.Sprintf("spec.upstream.credentialsSecret: Secret %s not found", ref.Name)})
	case err != nil:
		return fmt.Errorf("get credentials Secret: %w", err)
	default:
		user, pass := creds.Data[ref.UsernameKeyOrDefault()], creds.Data[ref.PasswordKeyOrDefault()]
		if len(user) == 0 || len(pass) == 0 {
			st.problem(problem{Reason: ReasonCredentialsKeyMissing,
				Message: fmt.Sprintf("spec.upstream.credentialsSecret: Secret %s lacks key %q or %q", ref.Name, ref.UsernameKeyOrDefault(), ref.PasswordKeyOrDefault())})
		} else {
			st.creds = &upstreamCredentials{Username: string(user), Password: string(pass)}
		}
	}

	if ca := pool.Spec.Upstream.CASecret; ca != nil {
		s := &corev1.Secret{}
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: ca.Name}, s); err != nil {
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("get upstream CA Secret: %w", err)
			}
			st.problem(problem{Reason: ReasonSecretMissing, Message: fmt.Sprintf("spec.upstream.caSecret: Secret %s not found", ca.Name)})
		} else if st.upstreamCA = s.Data[ca.KeyOrDefault()]; len(st.upstreamCA) == 0 {
			st.problem(problem{Reason: ReasonSecretMissing, Message: fmt.Sprintf("spec.upstream.caSecret: Secret %s lacks key %q", ca.Name, ca.KeyOrDefault())})
		}
	}

	if pool.TLSMode() == poolingv1alpha1.TLSSecret {
		s := &corev1.Secret{}
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: pool.Spec.TLS.SecretName}, s); err != nil {
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("get TLS Secret: %w", err)
			}
			st.problem(problem{Reason: ReasonSecretMissing, Message: fmt.Sprintf("spec.tls.secretName: Secret %s not found", pool.Spec.TLS.SecretName)})
		} else {
			st.clientCA = s.Data["ca.crt"]
		}
	}

	if pool.RegionAffinity() == poolingv1alpha1.RegionAffinityRequired {
		nodes := &metav1.PartialObjectMetadataList{}
		nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
		if err := r.Client.List(ctx, nodes, client.MatchingLabels{regionLabel: pool.Spec.Region}, client.Limit(1)); err != nil {
			return fmt.Errorf("list nodes in region: %w", err)
		}
		st.obs.NoNodeInRegion = len(nodes.Items) == 0
		if st.obs.NoNodeInRegion {
			st.due(st.now.Add(time.Minute)) // nodes are not watched; look again
		}
	}
	return nil
}

// planBudget decides the Deployment's replicas and the pool size from the spec and what runs
// (budget.go), so the upstream budget holds while the pool scales.
func (r *Reconciler) planBudget(ctx context.Context, st *run) error {
	pool := st.pool
	in := budgetInputs{ConfigFrozen: st.creds == nil}
	d := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: deploymentName(pool)}, d); {
	case err == nil && metav1.IsControlledBy(d, pool):
		in.Deployment = d
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("get Deployment: %w", err)
	}
	cfg := &corev1.Secret{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: configSecretName(pool)}, cfg); {
	case err == nil && metav1.IsControlledBy(cfg, pool):
		in.ConfigSize = configPoolSize(cfg)
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("get config Secret: %w", err)
	}
	st.budget = planBudget(pool, in)
	st.obs.PoolSize, st.obs.BudgetWaiting = st.budget.PoolSize, st.budget.Waiting
	return nil
}

// ensureKeys keeps one app Secret per API key, rotating keys whose spec.rotation moved and
// deleting the Secrets of keys removed from the spec. App Secrets are written before the config
// Secret, so the pooler never accepts a key apps cannot read yet.
func (r *Reconciler) ensureKeys(ctx context.Context, st *run) error {
	pool := st.pool
	list := &corev1.SecretList{}
	if err := r.Client.List(ctx, list, client.InNamespace(pool.Namespace),
		client.MatchingLabels{labelInstance: pool.Name, labelComponent: componentAPIKey}); err != nil {
		return fmt.Errorf("list app Secrets: %w", err)
	}
	existing := map[string]*corev1.Secret{}
	for i := range list.Items {
		s := &list.Items[i]
		if metav1.IsControlledBy(s, pool) {
			existing[s.Labels[labelAPIKey]] = s
		}
	}
	// A foreign Secret with a key's name is reported by ensureChild; until it goes away that
	// key is left out rather than given a key nobody can read.
	spec := pool.DeepCopy()
	spec.Spec.APIKeys = spec.Spec.APIKeys[:0]
	for _, k := range pool.Spec.APIKeys {
		if existing[k.Name] != nil {
			spec.Spec.APIKeys = append(spec.Spec.APIKeys, k)
			continue
		}
		// Not in the cache (which holds only the operator's Secrets): ask the API server.
		foreign := &corev1.Secret{}
		err := r.Reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: appSecretName(pool, k.Name)}, foreign)
		if err == nil && !metav1.IsControlledBy(foreign, pool) {
			st.problem(problem{Reason: ReasonNameConflict, Message: (&errNameConflict{Kind: "Secret", Name: foreign.Name}).Error()})
			continue
		}
		spec.Spec.APIKeys = append(spec.Spec.APIKeys, k)
	}

	keys, err := planKeys(spec, existing, st.now, r.keys)
	if err != nil {
		return err
	}
	for _, km := range keys {
		before := existing[km.Name]
		if _, err := r.ensureChild(ctx, pool, appSecret(pool, km, st.clientCA)); err != nil {
			return err
		}
		if prev, ok := keyFromSecret(before); ok && prev.Rotation != km.Rotation {
			validUntil := "now (no grace period)"
			if km.Previous != nil && km.Previous.NotAfter != nil {
				validUntil = km.Previous.NotAfter.Format(time.RFC3339)
			}
			r.Recorder.Eventf(pool, nil, corev1.EventTypeNormal, "APIKeyRotated", "RotateAPIKey",
				"rotated API key %s (new fingerprint %s); the previous key stays valid until %s",
				km.Name, apikey.Fingerprint(km.Key), validUntil)
		}
	}
	wanted := map[string]bool{}
	for _, k := range pool.Spec.APIKeys {
		wanted[k.Name] = true
	}
	for name, s := range existing {
		if !wanted[name] {
			if err := deleteChild(ctx, r.Client, pool, s); err != nil {
				return fmt.Errorf("delete app Secret of removed key %s: %w", name, err)
			}
		}
	}
	st.keys = keys
	st.obs.Keys = keys
	if t, ok := nextKeyExpiry(keys); ok {
		st.due(t)
	}
	return nil
}

// ensureConfig renders the pooler config Secret. Without usable credentials the existing config
// is left as it is: pods keep serving with the last good one.
func (r *Reconciler) ensureConfig(ctx context.Context, st *run) error {
	if st.creds == nil {
		return nil
	}
	cfg, err := poolerConfig(st.pool, *st.creds, st.keys, st.budget.PoolSize)
	if err != nil {
		return reconcile.TerminalError(err)
	}
	if cfg.Auth.DecoySecret, err = r.decoySecret(ctx, st.pool); err != nil {
		return err
	}
	secret, err := configSecret(st.pool, cfg)
	if err != nil {
		return err
	}
	_, err = r.ensureChild(ctx, st.pool, secret)
	return err
}

// ensureWorkload keeps the Deployment, Service, PodDisruptionBudget and NetworkPolicy in shape.
// A name conflict on one of them does not stop the others.
func (r *Reconciler) ensureWorkload(ctx context.Context, st *run) error {
	pool := st.pool
	image := pool.Spec.Image
	if image == "" {
		image = r.PoolerImage
	}
	// ensure writes one child (or, when desired is nil, deletes absent); a name conflict is
	// reported and does not stop the other children.
	ensure := func(desired, absent client.Object) (client.Object, error) {
		if desired == nil {
			if err := deleteChild(ctx, r.Client, pool, absent); err != nil {
				return nil, fmt.Errorf("delete %s: %w", kindOf(absent), err)
			}
			return nil, nil
		}
		live, err := r.ensureChild(ctx, pool, desired)
		var conflict *errNameConflict
		if errors.As(err, &conflict) {
			st.problem(problem{Reason: ReasonNameConflict, Message: conflict.Error()})
			return nil, nil
		}
		return live, err
	}
	live, err := ensure(poolerDeployment(pool, deploymentInputs{Image: image, CertSerial: st.certSerial, Budget: st.budget}), nil)
	if err != nil {
		return err
	}
	if live != nil {
		st.obs.Deployment = live.(*appsv1.Deployment)
	}
	if _, err := ensure(poolerService(pool), nil); err != nil {
		return err
	}
	var pdb, np client.Object // typed nils must not reach ensure as non-nil interfaces
	if p := poolerPDB(pool); p != nil {
		pdb = p
	}
	if n := poolerNetworkPolicy(pool); n != nil {
		np = n
	}
	if _, err := ensure(pdb, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: pdbName(pool), Namespace: pool.Namespace}}); err != nil {
		return err
	}
	if _, err := ensure(np, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: networkPolicyName(pool), Namespace: pool.Namespace}}); err != nil {
		return err
	}
	return nil
}

// checkUpstream looks up the latest reachability result of the pool's upstream. It never waits
// for a connection attempt: upstreamChecks runs them apart and reconciles the pool again when
// the result changes.
func (r *Reconciler) checkUpstream(_ context.Context, st *run) error {
	key := types.NamespacedName{Namespace: st.pool.Namespace, Name: st.pool.Name}
	if st.creds == nil || (st.pool.Spec.Upstream.CASecret != nil && len(st.upstreamCA) == 0) {
		r.checks.Forget(key)
		return nil
	}
	st.obs.Upstream, st.obs.UpstreamChecking = r.checks.Lookup(key, targetFor(st.pool, *st.creds, st.upstreamCA))
	return nil
}

// writeStatus writes the status when it changed, and emits an event per condition transition.
func (r *Reconciler) writeStatus(ctx context.Context, pool *poolingv1alpha1.ConnectionPool, next poolingv1alpha1.ConnectionPoolStatus) error {
	if equality.Semantic.DeepEqual(pool.Status, next) {
		return nil
	}
	prev := pool.Status
	pool.Status = next
	if err := r.Client.Status().Update(ctx, pool, fieldOwner); err != nil {
		return err
	}
	for _, c := range next.Conditions {
		eventType, emit := conditionEvent(meta.FindStatusCondition(prev.Conditions, c.Type), c)
		if emit {
			r.Recorder.Eventf(pool, nil, eventType, c.Reason, "Update"+c.Type, "%s is %s: %s", c.Type, c.Status, c.Message)
		}
	}
	return nil
}
