//go:build scale

package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/testutil"
)

// TestTwoHundredPools is the operator at scale: 200 ConnectionPools in one namespace, 100 with a
// reachable upstream (the suite's PostgreSQL), 80 whose upstream refuses connections and 20 whose
// upstream accepts and never answers (a black hole: every attempt waits for the timeout). It
// measures the time until every pool has its children and a status, the time until the reachable
// ones are Ready, the reconciles per pool, and the writes over a quiet minute afterwards, which
// must be zero: re-checks that find what the last one found change nothing. Numbers are logged
// (docs/operator.md quotes them). Build tag scale: `make test-e2e` runs it on its own (a minute of
// quiet observation, and timings that other packages' tests running in parallel would distort).
func TestTwoHundredPools(t *testing.T) {
	const (
		reachable  = 100
		refusing   = 80
		blackHoled = 20
		quiet      = time.Minute
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)

	refusingPort := closedPort(t)
	blackHole := blackHoleListener(ctx, t)
	if err := suite.client.Create(ctx, credentialsSecret(ns, "db", suite.pg.Password)); err != nil {
		t.Fatal(err)
	}
	type kind int
	const (
		kindReachable kind = iota
		kindRefusing
		kindBlackHoled
	)
	kinds := map[string]kind{}
	var pools []*poolingv1alpha1.ConnectionPool
	for i := range reachable + refusing + blackHoled {
		p := testPool(ns, fmt.Sprintf("p%03d", i))
		p.Spec.Replicas = ptr.To[int32](1)
		p.Spec.APIKeys = []poolingv1alpha1.APIKey{{Name: "app"}}
		p.Spec.Upstream.CredentialsSecret.Name = "db"
		switch {
		case i%10 == 9 && blackHoled > 0 && countKind(kinds, kindBlackHoled) < blackHoled:
			kinds[p.Name] = kindBlackHoled
			p.Spec.Upstream.Host, p.Spec.Upstream.Port = "127.0.0.1", blackHole
		case i%2 == 1 && countKind(kinds, kindRefusing) < refusing:
			kinds[p.Name] = kindRefusing
			p.Spec.Upstream.Host, p.Spec.Upstream.Port = "127.0.0.1", refusingPort
		default:
			kinds[p.Name] = kindReachable
		}
		pools = append(pools, p)
	}
	if countKind(kinds, kindReachable) != reachable || countKind(kinds, kindRefusing) != refusing || countKind(kinds, kindBlackHoled) != blackHoled {
		t.Fatalf("mix %d/%d/%d", countKind(kinds, kindReachable), countKind(kinds, kindRefusing), countKind(kinds, kindBlackHoled))
	}

	// Play the Deployment controller: every Deployment of the namespace becomes available.
	go markAvailableLoop(ctx, ns)

	reconcilesBefore := reconcileCount(t)
	checksBefore := suite.reconciler.checks.Checks()
	// Created as a GitOps tool or `kubectl apply` of a directory would: several at a time.
	start := time.Now()
	inParallel(8, pools, func(p *poolingv1alpha1.ConnectionPool) {
		if err := suite.client.Create(ctx, p); err != nil {
			t.Errorf("create %s: %v", p.Name, err)
		}
	})
	created := time.Since(start)

	var reachableReady, allReported time.Duration
	testutil.EventuallyNoError(t, "every pool reported", 3*time.Minute, func() error {
		list := &poolingv1alpha1.ConnectionPoolList{}
		if err := suite.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		readyCount, reported := 0, 0
		for i := range list.Items {
			p := &list.Items[i]
			up := meta.FindStatusCondition(p.Status.Conditions, poolingv1alpha1.ConditionUpstreamReachable)
			ready := meta.IsStatusConditionTrue(p.Status.Conditions, poolingv1alpha1.ConditionReady)
			switch kinds[p.Name] {
			case kindReachable:
				if ready {
					readyCount++
					reported++
				}
			case kindRefusing:
				if up != nil && up.Status == metav1.ConditionFalse && up.Reason == ReasonUnreachable {
					reported++
				}
			case kindBlackHoled:
				if up != nil && up.Status == metav1.ConditionFalse && up.Reason == ReasonTimeout {
					reported++
				}
			}
		}
		if readyCount == reachable && reachableReady == 0 {
			reachableReady = time.Since(start)
		}
		if reported < len(pools) {
			return fmt.Errorf("%d of %d pools reported (%d reachable Ready)", reported, len(pools), readyCount)
		}
		allReported = time.Since(start)
		return nil
	})
	// Every child exists.
	for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}} {
		if err := suite.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if n := meta.LenList(list); n != len(pools) {
			t.Fatalf("%T: %d, want %d", list, n, len(pools))
		}
	}
	secrets := &corev1.SecretList{}
	if err := suite.client.List(ctx, secrets, client.InNamespace(ns), client.MatchingLabels{labelManagedBy: managedBy}); err != nil {
		t.Fatal(err)
	}
	if want := 3 * len(pools); len(secrets.Items) != want { // config, tls, one app key
		t.Fatalf("%d Secrets, want %d", len(secrets.Items), want)
	}
	reconciles := reconcileCount(t) - reconcilesBefore
	checks := suite.reconciler.checks.Checks() - checksBefore

	// A quiet minute: watch every kind the operator writes and count the changes.
	writes, what := countWrites(ctx, t, ns, quiet)
	quietChecks := suite.reconciler.checks.Checks() - checksBefore - checks
	t.Logf("200 pools (%d reachable, %d refusing, %d black-holed): created in %v; reachable ones all Ready after %v; every pool reported after %v; "+
		"%d reconciles (%.1f per pool), %d upstream checks; quiet minute: %d writes, %d re-checks",
		reachable, refusing, blackHoled, created.Round(time.Millisecond), reachableReady.Round(time.Millisecond),
		allReported.Round(time.Millisecond), reconciles, float64(reconciles)/float64(len(pools)), checks, writes, quietChecks)
	if writes != 0 {
		t.Errorf("%d writes in a quiet minute: %v", writes, what)
	}
	if quietChecks == 0 {
		t.Error("no re-check ran in the quiet minute: the zero writes prove nothing")
	}
	if reachableReady > 30*time.Second {
		t.Errorf("the reachable pools took %v to be Ready, want within 30s", reachableReady)
	}
}

func countKind[K comparable](m map[string]K, k K) int {
	n := 0
	for _, v := range m {
		if v == k {
			n++
		}
	}
	return n
}

// blackHoleListener accepts connections and never answers, like a firewall that drops replies.
func blackHoleListener(ctx context.Context, t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	go func() {
		<-ctx.Done()
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// markAvailableLoop plays the Deployment controller for a namespace until ctx ends: a Deployment
// whose status does not describe its spec gets one where every replica is available. Like the
// real controller it has several workers.
func markAvailableLoop(ctx context.Context, ns string) {
	for ctx.Err() == nil {
		list := &appsv1.DeploymentList{}
		if err := suite.client.List(ctx, list, client.InNamespace(ns)); err == nil {
			var stale []*appsv1.Deployment
			for i := range list.Items {
				d := &list.Items[i]
				n := *d.Spec.Replicas
				if d.Status.ObservedGeneration != d.Generation || d.Status.AvailableReplicas != n || d.Status.Replicas != n {
					stale = append(stale, d)
				}
			}
			inParallel(5, stale, func(d *appsv1.Deployment) {
				n := *d.Spec.Replicas
				d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
					ReadyReplicas: n, AvailableReplicas: n, TerminatingReplicas: ptr.To[int32](0)}
				_ = suite.client.Status().Update(ctx, d)
			})
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reconcileCount is controller-runtime's reconcile counter of the ConnectionPool controller.
func reconcileCount(t *testing.T) int {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "controller") == "connectionpool" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return int(total)
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// countWrites watches the namespace's pools and every kind of child for d and counts the
// changes the API server reports (a write that changes nothing is not one).
func countWrites(ctx context.Context, t *testing.T, ns string, d time.Duration) (int, []string) {
	t.Helper()
	wc, err := client.NewWithWatch(suite.cfg, client.Options{Scheme: suite.client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 1024)
	var wg sync.WaitGroup
	wctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	for _, list := range []client.ObjectList{&poolingv1alpha1.ConnectionPoolList{}, &appsv1.DeploymentList{},
		&corev1.ServiceList{}, &corev1.SecretList{}} {
		// Start from now: list for the resourceVersion, then watch from it.
		if err := suite.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		rv := list.(metav1.ListInterface).GetResourceVersion()
		w, err := wc.Watch(wctx, list, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						if wctx.Err() == nil {
							t.Errorf("watch of %T ended early: writes may be missed", list)
						}
						return
					}
					if ev.Type == watch.Bookmark {
						continue
					}
					o, _ := meta.Accessor(ev.Object)
					if o == nil {
						events <- fmt.Sprintf("%s %T", ev.Type, ev.Object)
						continue
					}
					events <- fmt.Sprintf("%s %T %s", ev.Type, ev.Object, o.GetName())
				}
			}
		}()
	}
	wg.Wait()
	close(events)
	var what []string
	for e := range events {
		what = append(what, e)
	}
	if err := wctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	return len(what), what
}

// inParallel calls fn for every item on workers goroutines and returns when all are done.
func inParallel[T any](workers int, items []T, fn func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range work {
				fn(it)
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
}
