//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/localenv"
	"github.com/edgepool/edgepool/internal/testutil"
)

// TestBudgetHoldsWhileScalingAndRolling: PostgreSQL never sees more than
// spec.pool.maxUpstreamConnections from a pool, sampled every 100 ms from pg_stat_activity, while
// 16 clients keep every upstream connection busy and the pool scales 2 → 5 → 1 and rolls its pods.
func TestBudgetHoldsWhileScalingAndRolling(t *testing.T) {
	const (
		name    = "budget"
		budget  = 12
		clients = 16
	)
	ctx := context.Background()
	db := createLocalPool(ctx, t, name, "budgetdb", "budget_app", func(spec *poolingv1alpha1.ConnectionPoolSpec) {
		spec.Replicas = ptr.To[int32](2)
		spec.Pool.MaxUpstreamConnections = budget
		spec.APIKeys = []poolingv1alpha1.APIKey{{Name: "load"}}
	})
	if _, err := env.WaitReady(ctx, namespace, name, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	app, err := env.AppSecret(ctx, namespace, name, "load")
	if err != nil {
		t.Fatal(err)
	}

	// The sampler: every 100 ms, the pool's backends (the operator's reachability check, one
	// short connection a minute, is counted apart).
	sampler, err := pgconn.Connect(ctx, env.Postgres.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close(context.Background())
	var (
		mu              sync.Mutex
		phase           = "2 replicas"
		peak            = map[string]int{}
		peakWithChecker int
		samples         int
	)
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			res, err := sampler.Exec(ctx, "select count(*) filter (where application_name <> 'edgepool-operator'), count(*) from pg_stat_activity where usename = 'budget_app'").ReadAll()
			if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
				t.Errorf("sample pg_stat_activity: %v", err)
				return
			}
			var poolers, all int
			_, _ = fmt.Sscan(string(res[0].Rows[0][0]), &poolers)
			_, _ = fmt.Sscan(string(res[0].Rows[0][1]), &all)
			mu.Lock()
			peak[phase] = max(peak[phase], poolers)
			peakWithChecker = max(peakWithChecker, all)
			samples++
			mu.Unlock()
		}
	}()

	// The load: each client runs short transactions back to back, reconnecting when a pod it
	// was on goes away; together they keep every upstream connection busy.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				conn, err := connectThroughService(loadCtx, name, db.Name, string(app.Data["API_KEY"]))
				if err != nil {
					failed.Add(1)
					select {
					case <-loadCtx.Done():
					case <-time.After(100 * time.Millisecond): // a pod is being replaced: try again
					}
					continue
				}
				for loadCtx.Err() == nil {
					if _, err := conn.Exec(loadCtx, "select pg_sleep(0.05)"); err != nil {
						if loadCtx.Err() == nil {
							failed.Add(1)
						}
						break
					}
					done.Add(1)
				}
				conn.Close(context.Background())
			}
		}()
	}
	setPhase := func(p string) {
		mu.Lock()
		phase = p
		mu.Unlock()
		t.Logf("%s (transactions so far %d, failed attempts %d)", p, done.Load(), failed.Load())
	}
	// The operator's plan for each step: replicas, per-replica size.
	settle := func(replicas, size int32) {
		t.Helper()
		testutil.EventuallyNoError(t, fmt.Sprintf("%d replicas of pool size %d, settled", replicas, size), 3*time.Minute, func() error {
			p := &poolingv1alpha1.ConnectionPool{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, p); err != nil {
				return err
			}
			progressing := meta.FindStatusCondition(p.Status.Conditions, poolingv1alpha1.ConditionProgressing)
			if p.Status.ReadyReplicas != replicas || p.Status.PoolSizePerReplica != size || progressing == nil ||
				progressing.Status != metav1.ConditionFalse || progressing.ObservedGeneration != p.Generation {
				return fmt.Errorf("ready %d, size %d, progressing %+v", p.Status.ReadyReplicas, p.Status.PoolSizePerReplica, progressing)
			}
			return nil
		})
	}
	update := func(change func(*poolingv1alpha1.ConnectionPool)) {
		t.Helper()
		testutil.EventuallyNoError(t, "update the pool", 10*time.Second, func() error {
			p := &poolingv1alpha1.ConnectionPool{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, p); err != nil {
				return err
			}
			change(p)
			return env.Client.Update(ctx, p)
		})
	}
	waitTransactions := func(n int64) {
		t.Helper()
		testutil.EventuallyNoError(t, fmt.Sprintf("%d more transactions", n), 30*time.Second, func() error {
			if done.Load() < n {
				return fmt.Errorf("%d transactions", done.Load())
			}
			return nil
		})
	}

	settle(2, 4) // floor(12 / 3)
	waitTransactions(done.Load() + 100)
	setPhase("scale 2 → 5")
	update(func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](5) })
	settle(5, 2) // floor(12 / 6), after the two pods restarted with it
	waitTransactions(done.Load() + 100)
	setPhase("scale 5 → 1")
	update(func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](1) })
	settle(1, 6) // floor(12 / 2), raised live once the four pods are gone
	waitTransactions(done.Load() + 100)
	setPhase("rollout")
	update(func(p *poolingv1alpha1.ConnectionPool) {
		p.Spec.Template.Annotations = map[string]string{"example.com/rolled": "1"}
	})
	testutil.EventuallyNoError(t, "rollout onto the new template", 3*time.Minute, func() error {
		pods := env.Kubelet.Pods(namespace, name+"-pooler")
		if len(pods) != 1 || !pods[0].Ready || pods[0].PID == 0 {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	settle(1, 6)
	waitTransactions(done.Load() + 100)

	stopLoad()
	wg.Wait()
	close(stopSampling)
	<-samplingDone
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d samples; peak upstream connections by phase %v (budget %d); with the operator's check %d; %d transactions, %d failed attempts",
		samples, peak, budget, peakWithChecker, done.Load(), failed.Load())
	for p, n := range peak {
		if n > budget {
			t.Errorf("%s: PostgreSQL saw %d connections from the pool, over the budget of %d", p, n, budget)
		}
	}
	if peak["2 replicas"] < 8 {
		t.Errorf("the load did not use the pool (peak %d at 2 replicas of 4): the test proves nothing", peak["2 replicas"])
	}
}

// connectThroughService connects to the pool's Service (its local forwarder) as key "load".
func connectThroughService(ctx context.Context, pool, database, key string) (*pgx.Conn, error) {
	addr, err := env.Kubelet.WaitServiceAddr(ctx, namespace, pool+"-pooler", "postgres")
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://load:%s@%s/%s?sslmode=disable&connect_timeout=5",
		url.QueryEscape(key), addr, database))
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.ConnectConfig(cctx, cfg)
}

// createLocalPool creates a database and role in the suite's PostgreSQL and a pool in front of
// it (one replica, TLS off, as mutate leaves it), deleted when the test ends.
func createLocalPool(ctx context.Context, t *testing.T, name, database, role string, mutate func(*poolingv1alpha1.ConnectionPoolSpec)) localenv.Database {
	t.Helper()
	db, err := env.CreateDatabase(ctx, database, role, "")
	if err != nil {
		t.Fatal(err)
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-db", Namespace: namespace},
		StringData: map[string]string{"username": db.User, "password": db.Password}}
	pool := &poolingv1alpha1.ConnectionPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: poolingv1alpha1.ConnectionPoolSpec{
			Region: region,
			Upstream: poolingv1alpha1.Upstream{Host: "127.0.0.1", Port: int32(env.Postgres.Port), Database: db.Name, SSLMode: "disable",
				CredentialsSecret: poolingv1alpha1.CredentialsSecretRef{Name: creds.Name}},
			Replicas: ptr.To[int32](1),
			APIKeys:  []poolingv1alpha1.APIKey{{Name: "app"}},
			TLS:      poolingv1alpha1.TLSSettings{Mode: poolingv1alpha1.TLSDisabled},
		},
	}
	mutate(&pool.Spec)
	for _, o := range []client.Object{creds, pool} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), pool)
		_ = env.Client.Delete(context.Background(), creds)
	})
	return db
}
