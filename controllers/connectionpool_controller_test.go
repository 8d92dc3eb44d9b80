package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

const waitFor = 20 * time.Second

func key(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// readConfig reads and parses the pool's pooler config Secret.
func readConfig(ns, pool string) (*config.Config, error) {
	s := &corev1.Secret{}
	if err := suite.client.Get(context.Background(), key(ns, pool+"-pooler-config"), s); err != nil {
		return nil, err
	}
	return config.Parse(s.Data[config.FileName])
}

func configKey(cfg *config.Config, name string) *config.Key {
	for i := range cfg.Keys {
		if cfg.Keys[i].Name == name {
			return &cfg.Keys[i]
		}
	}
	return nil
}

// markDeploymentAvailable plays the Deployment controller: all replicas updated and available
// at the current generation.
func markDeploymentAvailable(t *testing.T, ns, name string) {
	t.Helper()
	testutil.EventuallyNoError(t, "mark Deployment available", waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(context.Background(), key(ns, name), d); err != nil {
			return err
		}
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
				Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		return suite.client.Status().Update(context.Background(), d)
	})
}

func condition(p *poolingv1alpha1.ConnectionPool, typ string) *metav1.Condition {
	return meta.FindStatusCondition(p.Status.Conditions, typ)
}

// waitCondition waits for a pool condition with the given status (and reason, when not empty)
// at the pool's current generation.
func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *poolingv1alpha1.ConnectionPool {
	t.Helper()
	var p *poolingv1alpha1.ConnectionPool
	testutil.EventuallyNoError(t, fmt.Sprintf("%s=%s (%s)", typ, status, reason), waitFor, func() error {
		p = getPool(t, ns, name)
		c := condition(p, typ)
		switch {
		case c == nil:
			return errors.New("no condition yet")
		case c.Status != status || (reason != "" && c.Reason != reason):
			return fmt.Errorf("%s=%s reason %s: %s", typ, c.Status, c.Reason, c.Message)
		case c.ObservedGeneration != p.Generation || p.Status.ObservedGeneration != p.Generation:
			return fmt.Errorf("observed generation %d, pool at %d", c.ObservedGeneration, p.Generation)
		}
		return nil
	})
	return p
}

func TestPoolCreatesChildrenAndTurnsReady(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createPool(t, testPool(ns, "shop"))

	// Every child exists, controlled by the pool, labelled.
	children := map[string]client.Object{
		"shop-pooler":        &appsv1.Deployment{},
		"shop-pooler-config": &corev1.Secret{},
		"shop-default":       &corev1.Secret{},
		"shop-ci":            &corev1.Secret{},
		"shop-tls":           &corev1.Secret{},
	}
	svc, pdb := &corev1.Service{}, &policyv1.PodDisruptionBudget{}
	testutil.EventuallyNoError(t, "children created", waitFor, func() error {
		for name, obj := range children {
			if err := suite.client.Get(ctx, key(ns, name), obj); err != nil {
				return err
			}
		}
		if err := suite.client.Get(ctx, key(ns, "shop-pooler"), svc); err != nil {
			return err
		}
		return suite.client.Get(ctx, key(ns, "shop-pooler"), pdb)
	})
	pool := getPool(t, ns, "shop")
	all := []client.Object{svc, pdb}
	for _, o := range children {
		all = append(all, o)
	}
	for _, o := range all {
		ref := metav1.GetControllerOf(o)
		if ref == nil || ref.UID != pool.UID || ref.Kind != "ConnectionPool" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("%s: controller reference %+v", o.GetName(), ref)
		}
		if l := o.GetLabels(); l[labelInstance] != "shop" || l[labelManagedBy] != managedBy {
			t.Errorf("%s: labels %v", o.GetName(), l)
		}
	}

	// The Deployment: region affinity, security context, contract image and command.
	d := children["shop-pooler"].(*appsv1.Deployment)
	spec := d.Spec.Template.Spec
	expr := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if expr.Key != "topology.kubernetes.io/region" || expr.Values[0] != "eu-central-1" {
		t.Errorf("region affinity %+v", expr)
	}
	if !*spec.SecurityContext.RunAsNonRoot || !*spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem || *spec.AutomountServiceAccountToken {
		t.Error("pod is not locked down")
	}
	if spec.Containers[0].Image != testImage || *d.Spec.Replicas != 2 || d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Errorf("image %s replicas %d", spec.Containers[0].Image, *d.Spec.Replicas)
	}

	// The config holds verifiers, never a plaintext key; the app Secrets carry the keys.
	cfgSecret := children["shop-pooler-config"].(*corev1.Secret)
	cfg, err := config.Parse(cfgSecret.Data[config.FileName])
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Pool.Size != 6 || cfg.Upstream.Port != suite.pg.Port || len(cfg.Keys) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	if len(cfg.Auth.DecoySecret) < 40 { // 32 random bytes, kept across renders (resourceVersions below)
		t.Fatalf("config has no decoy secret shared by the replicas: %q", cfg.Auth.DecoySecret)
	}
	for _, name := range []string{"shop-default", "shop-ci"} {
		app := children[name].(*corev1.Secret)
		apiKey := string(app.Data["API_KEY"])
		if !strings.HasPrefix(apiKey, "ep_") || !strings.Contains(string(app.Data["DATABASE_URL"]), "@shop-pooler."+ns+".svc:5432/postgres?sslmode=require") {
			t.Errorf("%s: API_KEY/DATABASE_URL not as expected", name)
		}
		if len(app.Data["ca.crt"]) == 0 {
			t.Errorf("%s: no ca.crt", name)
		}
		if strings.Contains(string(cfgSecret.Data[config.FileName]), apiKey) {
			t.Fatalf("config Secret contains the plaintext key of %s", name)
		}
	}

	// Pending until the Deployment is available; then Ready at the current generation.
	waitCondition(t, ns, "shop", poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionTrue, ReasonConnected)
	waitCondition(t, ns, "shop", poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeploymentNotAvailable)
	markDeploymentAvailable(t, ns, "shop-pooler")
	pool = waitCondition(t, ns, "shop", poolingv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	if pool.Status.Phase != poolingv1alpha1.PhaseReady || pool.Status.Ready != "2/2" || len(pool.Status.APIKeys) != 2 {
		t.Fatalf("status %+v", pool.Status)
	}

	// A reconcile of the unchanged pool writes nothing: every resourceVersion stays.
	versions := func() map[string]string {
		out := map[string]string{}
		p := getPool(t, ns, "shop")
		out["pool"] = p.ResourceVersion
		for _, o := range all {
			if err := suite.client.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("%T/%s", o, o.GetName())] = o.GetResourceVersion()
		}
		return out
	}
	// The reconciler reads through the manager's cache: let it catch up with the last writes
	// (every object at the resourceVersion the API server has) before comparing.
	var before map[string]string
	testutil.EventuallyNoError(t, "the manager's cache at the API server's versions", waitFor, func() error {
		before = versions()
		cached := map[string]string{}
		p := &poolingv1alpha1.ConnectionPool{}
		if err := suite.mgrClient.Get(ctx, key(ns, "shop"), p); err != nil {
			return err
		}
		cached["pool"] = p.ResourceVersion
		for _, o := range all {
			c := o.DeepCopyObject().(client.Object)
			if err := suite.mgrClient.Get(ctx, client.ObjectKeyFromObject(o), c); err != nil {
				return err
			}
			cached[fmt.Sprintf("%T/%s", o, o.GetName())] = c.GetResourceVersion()
		}
		if fmt.Sprint(cached) != fmt.Sprint(before) {
			return fmt.Errorf("cache %v, API server %v", cached, before)
		}
		return nil
	})
	for range 2 {
		if _, err := suite.reconciler.Reconcile(ctx, reconcile.Request{NamespacedName: key(ns, "shop")}); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
	}
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("reconciling an unchanged pool wrote:\nbefore %v\nafter  %v", before, after)
	}
	assertNoSecretsLogged(t, ns, "shop")
}

// TestScaleKeepsTheBudget scales through the scale subresource and plays the Deployment
// controller: a scale-down lowers the replicas first and raises the pool size (live, no restart)
// only once the Deployment settled; a scale-up first restarts the running pods with the smaller
// size (the pod template changes) and raises the replicas only once that rollout settled. A
// replica count at or above the budget is refused.
func TestScaleKeepsTheBudget(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pool := createPool(t, testPool(ns, "scaled"))
	testutil.EventuallyNoError(t, "PDB at 2 replicas", waitFor, func() error {
		return suite.client.Get(ctx, key(ns, "scaled-pooler"), &policyv1.PodDisruptionBudget{})
	})
	deployment := func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(ctx, key(ns, "scaled-pooler"), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	scale := func(replicas int32) error {
		return suite.client.SubResource("scale").Update(ctx, pool, client.WithSubResourceBody(&autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}))
	}
	type state struct {
		replicas, size, templateSize int32
	}
	observe := func() state {
		cfg, err := readConfig(ns, "scaled")
		if err != nil {
			t.Fatal(err)
		}
		d := deployment()
		return state{*d.Spec.Replicas, int32(cfg.Pool.Size), templatePoolSize(d, 0)}
	}
	// Budget 20: 2 replicas × floor(20/3) = 6.
	markDeploymentAvailable(t, ns, "scaled-pooler")
	if got := observe(); got != (state{2, 6, 6}) {
		t.Fatalf("start %+v", got)
	}
	for _, step := range []struct {
		replicas int32
		first    state // what the operator writes before the Deployment settles
		final    state
		pdb      bool
	}{
		{4, state{2, 4, 4}, state{4, 4, 4}, true},   // restart the 2 with size 4, then scale to 4
		{1, state{1, 4, 4}, state{1, 10, 4}, false}, // fewer pods first, then size 10 live
		{3, state{1, 5, 5}, state{3, 5, 5}, true},   // restart the 1 with size 5, then scale to 3
	} {
		if err := scale(step.replicas); err != nil {
			t.Fatalf("scale to %d: %v", step.replicas, err)
		}
		testutil.EventuallyNoError(t, fmt.Sprintf("first step towards %d", step.replicas), waitFor, func() error {
			if got := observe(); got != step.first {
				return fmt.Errorf("state %+v, want %+v", got, step.first)
			}
			return nil
		})
		testutil.EventuallyNoError(t, fmt.Sprintf("scaled to %d", step.replicas), waitFor, func() error {
			markDeploymentAvailable(t, ns, "scaled-pooler")
			if got := observe(); got != step.final {
				return fmt.Errorf("state %+v, want %+v", got, step.final)
			}
			err := suite.client.Get(ctx, key(ns, "scaled-pooler"), &policyv1.PodDisruptionBudget{})
			if step.pdb != (err == nil) {
				return fmt.Errorf("pdb present=%v, want %v (%w)", err == nil, step.pdb, err)
			}
			p := getPool(t, ns, "scaled")
			if p.Status.Replicas != step.replicas || p.Status.PoolSizePerReplica != step.final.size {
				return fmt.Errorf("status replicas %d size %d", p.Status.Replicas, p.Status.PoolSizePerReplica)
			}
			return nil
		})
	}
	// At or above the budget: refused, naming the field.
	err := scale(20)
	if err == nil || !strings.Contains(err.Error(), "replicas must be lower than pool.maxUpstreamConnections") {
		t.Fatalf("scale to 20 with a budget of 20: %v", err)
	}
	// The scale subresource reads back through status.selector.
	got := &autoscalingv1.Scale{}
	if err := suite.client.SubResource("scale").Get(ctx, pool, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Replicas != 3 || !strings.Contains(got.Status.Selector, "app.kubernetes.io/instance=scaled") {
		t.Fatalf("scale status %+v", got.Status)
	}
}

func TestKeyRotationGraceAndDisable(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := testPool(ns, "rot")
	p.Spec.APIKeys[1].GracePeriod = &metav1.Duration{Duration: 3 * time.Second}
	createPool(t, p)

	var oldKey string
	testutil.EventuallyNoError(t, "keys issued", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "rot-ci"), s); err != nil {
			return err
		}
		oldKey = string(s.Data["API_KEY"])
		_, err := readConfig(ns, "rot")
		return err
	})

	// Rotate ci: a new key, both verifiers (sharing salt) until the grace period ends.
	bump := func(mutate func(p *poolingv1alpha1.ConnectionPool)) {
		testutil.EventuallyNoError(t, "update pool", waitFor, func() error {
			cur := getPool(t, ns, "rot")
			mutate(cur)
			return suite.client.Update(ctx, cur)
		})
	}
	bump(func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[1].Rotation = 1 })
	var newKey string
	testutil.EventuallyNoError(t, "rotated", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "rot-ci"), s); err != nil {
			return err
		}
		if newKey = string(s.Data["API_KEY"]); newKey == oldKey {
			return errors.New("key not rotated yet")
		}
		cfg, err := readConfig(ns, "rot")
		if err != nil {
			return err
		}
		k := configKey(cfg, "ci")
		if k == nil || len(k.Verifiers) != 2 {
			return fmt.Errorf("ci verifiers %+v", k)
		}
		if k.Verifiers[1].NotAfter == nil || k.Verifiers[0].NotAfter != nil {
			return errors.New("previous verifier lacks NotAfter")
		}
		if strings.Split(k.Verifiers[0].SCRAM, "$")[1] != strings.Split(k.Verifiers[1].SCRAM, "$")[1] {
			return errors.New("old and new verifier do not share salt and iterations")
		}
		return nil
	})
	testutil.EventuallyNoError(t, "rotation in status", waitFor, func() error {
		p := getPool(t, ns, "rot")
		if len(p.Status.APIKeys) != 2 {
			return fmt.Errorf("key status %+v", p.Status.APIKeys)
		}
		if st := p.Status.APIKeys[1]; st.Rotation != 1 || st.PreviousFingerprint == "" || st.PreviousValidUntil == nil {
			return fmt.Errorf("key status %+v", st)
		}
		return nil
	})

	// The grace period ends: the previous verifier goes without anyone touching the pool.
	testutil.EventuallyNoError(t, "previous key dropped", 15*time.Second, func() error {
		cfg, err := readConfig(ns, "rot")
		if err != nil {
			return err
		}
		if k := configKey(cfg, "ci"); k == nil || len(k.Verifiers) != 1 {
			return fmt.Errorf("ci verifiers %+v", k)
		}
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "rot-ci"), s); err != nil {
			return err
		}
		if string(s.Data["API_KEY"]) != newKey {
			return errors.New("key changed again")
		}
		if _, ok := s.Annotations[annotationPreviousKey]; ok {
			return errors.New("previous verifier still recorded")
		}
		return nil
	})

	// Disabling a key removes it from the config at once; its Secret stays.
	bump(func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys[0].Disabled = true })
	testutil.EventuallyNoError(t, "disabled key removed", waitFor, func() error {
		cfg, err := readConfig(ns, "rot")
		if err != nil {
			return err
		}
		if configKey(cfg, "default") != nil {
			return errors.New("disabled key still in config")
		}
		return nil
	})
	if err := suite.client.Get(ctx, key(ns, "rot-default"), &corev1.Secret{}); err != nil {
		t.Fatalf("disabled key's Secret: %v", err)
	}

	// Removing a key deletes its Secret.
	bump(func(p *poolingv1alpha1.ConnectionPool) { p.Spec.APIKeys = p.Spec.APIKeys[1:] })
	testutil.EventuallyNoError(t, "removed key's Secret deleted", waitFor, func() error {
		err := suite.client.Get(ctx, key(ns, "rot-default"), &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	assertNoSecretsLogged(t, ns, "rot")
}

func TestCredentialsSecretDeletedThenRecreated(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createPool(t, testPool(ns, "creds"))
	markDeploymentAvailable(t, ns, "creds-pooler")
	waitCondition(t, ns, "creds", poolingv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	if err := suite.client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds-db", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	p := waitCondition(t, ns, "creds", poolingv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonCredentialsSecretMissing)
	if p.Status.Phase != poolingv1alpha1.PhaseDegraded || !strings.Contains(condition(p, poolingv1alpha1.ConditionDegraded).Message, "creds-db") {
		t.Fatalf("status %+v", p.Status)
	}

	// Recreating the Secret heals the pool through the field-indexed watch, no nudge needed.
	if err := suite.client.Create(ctx, credentialsSecret(ns, "creds-db", suite.pg.Password)); err != nil {
		t.Fatal(err)
	}
	p = waitCondition(t, ns, "creds", poolingv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	if c := condition(p, poolingv1alpha1.ConditionDegraded); c.Status != metav1.ConditionFalse || p.Status.Phase != poolingv1alpha1.PhaseReady {
		t.Fatalf("not healed: %+v", p.Status)
	}
}

func TestWrongUpstreamPasswordReportsAuthentication(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := testPool(ns, "badpw")
	const wrong = "not-the-password-4711"
	if err := suite.client.Create(ctx, credentialsSecret(ns, "badpw-db", wrong)); err != nil {
		t.Fatal(err)
	}
	if err := suite.client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	p = waitCondition(t, ns, "badpw", poolingv1alpha1.ConditionUpstreamReachable, metav1.ConditionFalse, ReasonAuthenticationFailed)
	c := condition(p, poolingv1alpha1.ConditionUpstreamReachable)
	if !strings.Contains(c.Message, "authentication") || strings.Contains(c.Message, wrong) {
		t.Fatalf("message %q", c.Message)
	}
	markDeploymentAvailable(t, ns, "badpw-pooler")
	p = waitCondition(t, ns, "badpw", poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonUpstreamUnreachable)
	if p.Status.Phase != poolingv1alpha1.PhaseDegraded {
		t.Fatalf("phase %s", p.Status.Phase)
	}

	// An event tells kubectl describe readers, without the password.
	testutil.EventuallyNoError(t, "warning event", waitFor, func() error {
		events := &eventsv1.EventList{}
		if err := suite.client.List(ctx, events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Note, wrong) {
				t.Fatalf("event leaks the password: %q", e.Note)
			}
			if e.Reason == ReasonAuthenticationFailed && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("no AuthenticationFailed event among %d", len(events.Items))
	})

	// Fixing the password heals it.
	testutil.EventuallyNoError(t, "fix password", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "badpw-db"), s); err != nil {
			return err
		}
		s.Data["password"] = []byte(suite.pg.Password)
		return suite.client.Update(ctx, s)
	})
	waitCondition(t, ns, "badpw", poolingv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	if strings.Contains(suite.logs.String(), wrong) {
		t.Fatal("the operator logged the upstream password")
	}
}

func TestDeletedChildIsRecreated(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createPool(t, testPool(ns, "heal"))
	for _, obj := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "heal-pooler", Namespace: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heal-pooler-config", Namespace: ns}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "heal-pooler", Namespace: ns}},
	} {
		var uid string
		testutil.EventuallyNoError(t, "child exists", waitFor, func() error {
			if err := suite.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			uid = string(obj.GetUID())
			return nil
		})
		if err := suite.client.Delete(ctx, obj); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyNoError(t, fmt.Sprintf("%T recreated", obj), waitFor, func() error {
			if err := suite.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			if string(obj.GetUID()) == uid {
				return errors.New("still the old object")
			}
			return nil
		})
	}
}

func TestForeignObjectIsNotAdopted(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "taken-pooler", Namespace: ns, Labels: map[string]string{"owner": "someone-else"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "web", Port: 80}}},
	}
	if err := suite.client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	createPool(t, testPool(ns, "taken"))
	p := waitCondition(t, ns, "taken", poolingv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonNameConflict)
	if msg := condition(p, poolingv1alpha1.ConditionDegraded).Message; !strings.Contains(msg, "Service taken-pooler") {
		t.Fatalf("message %q", msg)
	}
	got := &corev1.Service{}
	if err := suite.client.Get(ctx, client.ObjectKeyFromObject(foreign), got); err != nil {
		t.Fatal(err)
	}
	if len(got.OwnerReferences) != 0 || got.Spec.Ports[0].Port != 80 || got.Labels[labelInstance] != "" {
		t.Fatalf("foreign Service was touched: %+v", got)
	}
	// The other children are still made.
	if err := suite.client.Get(ctx, key(ns, "taken-pooler"), &appsv1.Deployment{}); err != nil {
		t.Fatalf("deployment: %v", err)
	}
}

// assertNoSecretsLogged checks the operator's log for the pool's keys and upstream password.
func assertNoSecretsLogged(t *testing.T, ns, pool string) {
	t.Helper()
	logs := suite.logs.String()
	if strings.Contains(logs, suite.pg.Password) {
		t.Fatal("the operator logged the upstream password")
	}
	secrets := &corev1.SecretList{}
	if err := suite.client.List(context.Background(), secrets, client.InNamespace(ns),
		client.MatchingLabels{labelInstance: pool, labelComponent: componentAPIKey}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if k := string(s.Data["API_KEY"]); k != "" && strings.Contains(logs, k) {
			t.Fatalf("the operator logged API key %s", s.Name)
		}
	}
}

func TestNoNodeInRegionIsReported(t *testing.T) {
	ns := newNamespace(t)
	p := testPool(ns, "far")
	p.Spec.Region = "ap-south-1"
	createPool(t, p)
	markDeploymentAvailable(t, ns, "far-pooler")
	testutil.EventuallyNoError(t, "scale the far Deployment to zero available", waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(context.Background(), key(ns, "far-pooler"), d); err != nil {
			return err
		}
		d.Status.AvailableReplicas, d.Status.ReadyReplicas = 0, 0
		return suite.client.Status().Update(context.Background(), d)
	})
	got := waitCondition(t, ns, "far", poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNoNodeInRegion)
	if !strings.Contains(condition(got, poolingv1alpha1.ConditionReady).Message, "ap-south-1") {
		t.Fatalf("message %q", condition(got, poolingv1alpha1.ConditionReady).Message)
	}

	// Preferred placement does not require a node of the region.
	testutil.EventuallyNoError(t, "relax placement", waitFor, func() error {
		cur := getPool(t, ns, "far")
		cur.Spec.Placement.RegionAffinity = poolingv1alpha1.RegionAffinityPreferred
		return suite.client.Update(context.Background(), cur)
	})
	waitCondition(t, ns, "far", poolingv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeploymentNotAvailable)
}

func TestUserTLSSecretIsWatched(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := testPool(ns, "ownca")
	p.Spec.TLS = poolingv1alpha1.TLSSettings{Mode: poolingv1alpha1.TLSSecret, SecretName: "ownca-cert"}
	createPool(t, p)
	got := waitCondition(t, ns, "ownca", poolingv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretMissing)
	if msg := condition(got, poolingv1alpha1.ConditionDegraded).Message; !strings.Contains(msg, "spec.tls.secretName") {
		t.Fatalf("message %q", msg)
	}
	if err := suite.client.Get(ctx, key(ns, "ownca-tls"), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("generated TLS Secret in mode Secret: %v", err)
	}

	// Creating the user's Secret heals the pool; its ca.crt reaches the app Secrets and the
	// pods mount it.
	cert := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ownca-cert", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY"), "ca.crt": []byte("USER CA")},
	}
	if err := suite.client.Create(ctx, cert); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "ownca", poolingv1alpha1.ConditionDegraded, metav1.ConditionFalse, "")
	testutil.EventuallyNoError(t, "user CA in app Secret", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "ownca-default"), s); err != nil {
			return err
		}
		if string(s.Data["ca.crt"]) != "USER CA" {
			return fmt.Errorf("ca.crt %q", s.Data["ca.crt"])
		}
		return nil
	})
	d := &appsv1.Deployment{}
	if err := suite.client.Get(ctx, key(ns, "ownca-pooler"), d); err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret.SecretName != "ownca-cert" {
			t.Fatalf("tls volume from %s", v.Secret.SecretName)
		}
	}
}

func TestHandEditedConfigIsReverted(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createPool(t, testPool(ns, "drift"))
	var original []byte
	testutil.EventuallyNoError(t, "config Secret", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "drift-pooler-config"), s); err != nil {
			return err
		}
		original = s.Data[config.FileName]
		return nil
	})
	// Someone slips a key of their own into the pooler config.
	testutil.EventuallyNoError(t, "edit config", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "drift-pooler-config"), s); err != nil {
			return err
		}
		s.Data[config.FileName] = []byte(`{"keys":[{"name":"intruder"}]}`)
		return suite.client.Update(ctx, s)
	})
	testutil.EventuallyNoError(t, "config restored", waitFor, func() error {
		s := &corev1.Secret{}
		if err := suite.client.Get(ctx, key(ns, "drift-pooler-config"), s); err != nil {
			return err
		}
		if !bytes.Equal(s.Data[config.FileName], original) {
			return errors.New("still edited")
		}
		return nil
	})
}

// TestHandEditedWorkloadIsReverted: hand edits of fields the operator owns on the Deployment and
// the Service are put back without a spec change; what others own (clusterIP, foreign
// annotations) stays.
func TestHandEditedWorkloadIsReverted(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pool := testPool(ns, "edited")
	pool.Spec.Template.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	createPool(t, pool)
	svc := &corev1.Service{}
	testutil.EventuallyNoError(t, "children", waitFor, func() error {
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), &appsv1.Deployment{}); err != nil {
			return err
		}
		return suite.client.Get(ctx, key(ns, "edited-pooler"), svc)
	})
	clusterIP := svc.Spec.ClusterIP

	// kubectl edit: another image, no affinity, a foreign annotation; the Service's port moved.
	testutil.EventuallyNoError(t, "edit Deployment", waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), d); err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "evil.example/pooler:latest"
		d.Spec.Template.Spec.Affinity = nil
		metav1.SetMetaDataAnnotation(&d.ObjectMeta, "example.com/owner", "team-db")
		return suite.client.Update(ctx, d, client.FieldOwner("kubectl-edit"))
	})
	testutil.EventuallyNoError(t, "edit Service", waitFor, func() error {
		s := &corev1.Service{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), s); err != nil {
			return err
		}
		s.Spec.Ports[0].Port = 6543
		metav1.SetMetaDataAnnotation(&s.ObjectMeta, "example.com/owner", "team-db")
		return suite.client.Update(ctx, s, client.FieldOwner("kubectl-edit"))
	})

	testutil.EventuallyNoError(t, "Deployment reverted", waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), d); err != nil {
			return err
		}
		spec := d.Spec.Template.Spec
		if img := spec.Containers[0].Image; img != testImage {
			return fmt.Errorf("image %s", img)
		}
		if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			return errors.New("region affinity still missing")
		}
		if expr := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]; expr.Key != regionLabel || expr.Values[0] != "eu-central-1" {
			return fmt.Errorf("region affinity %+v", expr)
		}
		if d.Annotations["example.com/owner"] != "team-db" {
			return errors.New("foreign annotation dropped")
		}
		return nil
	})
	testutil.EventuallyNoError(t, "Service reverted", waitFor, func() error {
		s := &corev1.Service{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), s); err != nil {
			return err
		}
		if len(s.Spec.Ports) != 2 || s.Spec.Ports[0].Name != "postgres" || s.Spec.Ports[0].Port != PostgresPort {
			return fmt.Errorf("ports %+v", s.Spec.Ports)
		}
		if s.Spec.ClusterIP != clusterIP {
			return fmt.Errorf("clusterIP %s, was %s", s.Spec.ClusterIP, clusterIP)
		}
		if s.Annotations["example.com/owner"] != "team-db" {
			return errors.New("foreign annotation dropped")
		}
		return nil
	})

	// A field the operator stops setting goes away, also one it set when it created the child
	// (Create, before any apply): dropping the toleration, turning HTTP off.
	testutil.EventuallyNoError(t, "drop toleration, turn HTTP off", waitFor, func() error {
		p := getPool(t, ns, "edited")
		p.Spec.Template.Tolerations = nil
		p.Spec.HTTP.Enabled = ptr.To(false)
		return suite.client.Update(ctx, p)
	})
	testutil.EventuallyNoError(t, "toleration removed", waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), d); err != nil {
			return err
		}
		if tol := d.Spec.Template.Spec.Tolerations; len(tol) != 0 {
			return fmt.Errorf("tolerations %+v", tol)
		}
		return nil
	})
	testutil.EventuallyNoError(t, "http port removed", waitFor, func() error {
		s := &corev1.Service{}
		if err := suite.client.Get(ctx, key(ns, "edited-pooler"), s); err != nil {
			return err
		}
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "postgres" || s.Spec.ClusterIP != clusterIP {
			return fmt.Errorf("ports %+v clusterIP %s", s.Spec.Ports, s.Spec.ClusterIP)
		}
		return nil
	})
}

// TestNetworkPolicyFollowsTheSpec: enabling spec.networkPolicy creates <pool>-pooler owned by the
// pool; disabling it deletes it.
func TestNetworkPolicyFollowsTheSpec(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := testPool(ns, "np")
	p.Spec.NetworkPolicy.Enabled = true
	createPool(t, p)
	testutil.EventuallyNoError(t, "NetworkPolicy created", waitFor, func() error {
		np := &networkingv1.NetworkPolicy{}
		if err := suite.client.Get(ctx, key(ns, "np-pooler"), np); err != nil {
			return err
		}
		if !metav1.IsControlledBy(np, getPool(t, ns, "np")) || len(np.Spec.Ingress) != 1 {
			return fmt.Errorf("policy %+v", np)
		}
		return nil
	})
	testutil.EventuallyNoError(t, "disable", waitFor, func() error {
		cur := getPool(t, ns, "np")
		cur.Spec.NetworkPolicy.Enabled = false
		return suite.client.Update(ctx, cur)
	})
	testutil.EventuallyNoError(t, "NetworkPolicy deleted", waitFor, func() error {
		err := suite.client.Get(ctx, key(ns, "np-pooler"), &networkingv1.NetworkPolicy{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%w)", err)
		}
		return nil
	})
}
