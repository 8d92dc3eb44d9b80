package controllers

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
)

// upstreamChecks runs the reachability checks apart from Reconcile, so an unreachable or
// black-holed database never holds a reconcile worker. Reconcile only looks a result up (Lookup):
// the first lookup of a target queues a check at once; afterwards the checks re-run on their own
// schedule (RecheckReachable / RecheckUnreachable) and a pool is reconciled again only when its
// result changed. A re-check that finds what the last one found changes nothing, so a quiet
// cluster stays quiet: no reconcile, no write.
type upstreamChecks struct {
	// Try makes one attempt (upstream.go: connection settings, TLS, classification).
	Try func(ctx context.Context, t upstreamTarget) upstreamResult
	// MaxConcurrent bounds the attempts in flight; each one waits at most the attempt timeout.
	MaxConcurrent int
	// RecheckReachable and RecheckUnreachable are the periods of the re-checks.
	RecheckReachable   time.Duration
	RecheckUnreachable time.Duration

	// changed receives a pool whose result changed; the controller watches it.
	changed chan event.GenericEvent
	queue   workqueue.TypedDelayingInterface[types.NamespacedName]

	mu      sync.Mutex
	entries map[types.NamespacedName]*checkEntry
	// checks counts finished attempts (tests and the scale benchmark read it).
	checks int
}

// checkEntry is what is known about one pool's upstream.
type checkEntry struct {
	target upstreamTarget
	inputs [32]byte // target.hash(): a spec or credentials change re-checks at once
	result *upstreamResult
}

func newUpstreamChecks(try func(context.Context, upstreamTarget) upstreamResult) *upstreamChecks {
	return &upstreamChecks{
		Try:                try,
		MaxConcurrent:      64,
		RecheckReachable:   time.Minute,
		RecheckUnreachable: 15 * time.Second,
		changed:            make(chan event.GenericEvent, 1024),
		queue: workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[types.NamespacedName]{
			Name: "edgepool_upstream_checks",
		}),
		entries: map[types.NamespacedName]*checkEntry{},
	}
}

// Lookup returns the latest result for the pool's current target. checking is true when there is
// none yet: the target is new or changed, and its first check is queued or running.
func (u *upstreamChecks) Lookup(pool types.NamespacedName, t upstreamTarget) (res *upstreamResult, checking bool) {
	inputs := t.hash()
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.entries[pool]
	if e != nil && e.inputs == inputs {
		return e.result, e.result == nil
	}
	if e == nil {
		e = &checkEntry{}
		u.entries[pool] = e
	}
	e.target, e.inputs, e.result = t, inputs, nil
	u.queue.Add(pool)
	return nil, true
}

// Forget drops a pool that was deleted or has no usable credentials any more; its queued
// re-check finds nothing to do.
func (u *upstreamChecks) Forget(pool types.NamespacedName) {
	u.mu.Lock()
	delete(u.entries, pool)
	u.mu.Unlock()
}

// Checks is the number of attempts finished so far.
func (u *upstreamChecks) Checks() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.checks
}

// Start runs the checks until ctx ends (a manager Runnable; it runs on every replica, leader or
// not, which only means a standby warms its cache).
func (u *upstreamChecks) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("upstream-checks")
	go func() {
		<-ctx.Done()
		u.queue.ShutDown()
	}()
	slots := make(chan struct{}, max(1, u.MaxConcurrent))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		pool, shutdown := u.queue.Get()
		if shutdown {
			return nil
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			u.queue.Done(pool)
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			u.run(ctx, pool, logger.V(1).Info)
		}()
	}
}

// run makes one attempt for pool, records it, reports a changed result and schedules the next.
func (u *upstreamChecks) run(ctx context.Context, pool types.NamespacedName, debug func(string, ...any)) {
	defer u.queue.Done(pool)
	// The queue never hands out a key that is still being processed: a Lookup that retargets
	// the pool meanwhile queues it again for after this attempt, and at most one delayed
	// re-check per pool is pending.
	u.mu.Lock()
	e := u.entries[pool]
	if e == nil {
		u.mu.Unlock()
		return // forgotten
	}
	t, inputs := e.target, e.inputs
	u.mu.Unlock()

	res := u.Try(ctx, t)

	u.mu.Lock()
	u.checks++
	if u.entries[pool] != e || e.inputs != inputs {
		u.mu.Unlock()
		return // forgotten or retargeted meanwhile: this result describes nothing current
	}
	changed := e.result == nil || *e.result != res
	e.result = &res
	u.mu.Unlock()

	if ctx.Err() != nil {
		return
	}
	next := u.RecheckUnreachable
	if res.Reachable {
		next = u.RecheckReachable
	}
	// ±10 % jitter keeps pools created together from re-checking in lockstep.
	u.queue.AddAfter(pool, time.Duration(float64(next)*(0.9+0.2*rand.Float64()))) //nolint:gosec // jitter, not a secret
	if changed {
		debug("upstream check result changed", "pool", pool.String(), "reachable", res.Reachable, "reason", res.Reason)
		obj := &poolingv1alpha1.ConnectionPool{}
		obj.Namespace, obj.Name = pool.Namespace, pool.Name
		select {
		case u.changed <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
		}
	}
}
