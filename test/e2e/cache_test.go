//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/testutil"
)

// TestCacheFlipThroughThePool turns spec.http.cache on in a running pool: the same pooler
// process (no restart) then answers a request with Cache-Control: max-age from its cache.
func TestCacheFlipThroughThePool(t *testing.T) {
	const name = "cacheflip"
	ctx := context.Background()
	createLocalPool(ctx, t, name, "cachedb", "cache_app", func(spec *poolingv1alpha1.ConnectionPoolSpec) {
		spec.APIKeys = []poolingv1alpha1.APIKey{{Name: "web"}}
	})
	if _, err := env.WaitReady(ctx, namespace, name, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	app, err := env.AppSecret(ctx, namespace, name, "web")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := env.Kubelet.WaitServiceAddr(ctx, namespace, name+"-pooler", "http")
	if err != nil {
		t.Fatal(err)
	}
	cacheStatus := func() (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/sql", strings.NewReader(`{"query": "select now()::text as t"}`))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+string(app.Data["API_KEY"]))
		req.Header.Set("Cache-Control", "max-age=60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("POST /sql: %d %s", resp.StatusCode, body)
		}
		return resp.Header.Get("Edgepool-Cache"), nil
	}
	for range 2 {
		if got, err := cacheStatus(); err != nil || got == "hit" {
			t.Fatalf("cache off: %q %v", got, err)
		}
	}
	pods := env.Kubelet.Pods(namespace, name+"-pooler")
	if len(pods) != 1 {
		t.Fatalf("pods %+v", pods)
	}
	pid := pods[0].PID

	testutil.EventuallyNoError(t, "turn the cache on", 10*time.Second, func() error {
		p := &poolingv1alpha1.ConnectionPool{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, p); err != nil {
			return err
		}
		p.Spec.HTTP.Cache.Enabled = true
		return env.Client.Update(ctx, p)
	})
	testutil.EventuallyNoError(t, "a repeat within max-age answered from the cache", 30*time.Second, func() error {
		if _, err := cacheStatus(); err != nil {
			return err
		}
		got, err := cacheStatus()
		if err != nil {
			return err
		}
		if got != "hit" {
			return fmt.Errorf("Edgepool-Cache %q", got)
		}
		return nil
	})
	if pods := env.Kubelet.Pods(namespace, name+"-pooler"); len(pods) != 1 || pods[0].PID != pid {
		t.Fatalf("the cache change restarted the pooler (pid %d before, now %+v)", pid, pods)
	}
}
