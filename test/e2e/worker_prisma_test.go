//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
)

// TestCloudflareWorkerPrisma runs examples/cloudflare-worker-prisma (Hono + Prisma 7 with
// accelerateUrl and withAccelerate(), the Prisma Accelerate user's setup) under `wrangler dev`
// against the pool of TestCloudflareWorker. The pool has TLS disabled (workerd trusts only
// public roots), so the app Secret has no ACCELERATE_URL (prisma:// is always https); the test
// builds the loopback form Prisma speaks plain http to, prisma+postgres://localhost:<port>/,
// from the Secret's API_KEY. With that host, $accelerate.invalidate also goes to the pool.
// Node dependencies: hack/install-node-deps.sh examples/cloudflare-worker-prisma and
// hack/prisma-generate.sh examples/cloudflare-worker-prisma (make test-worker runs both).
func TestCloudflareWorkerPrisma(t *testing.T) {
	dir, _ := filepath.Abs("../../examples/cloudflare-worker-prisma")
	pool := edgeWorkerPool(t)
	if _, ok := pool.secret.Data["ACCELERATE_URL"]; ok {
		t.Errorf("app Secret of a pool without TLS has ACCELERATE_URL; prisma:// would speak https to a plaintext port")
	}
	_, port, _ := net.SplitHostPort(pool.httpAddr)
	accel := fmt.Sprintf("prisma+postgres://localhost:%s/?api_key=%s", port, url.QueryEscape(string(pool.secret.Data["API_KEY"])))
	t.Logf("ACCELERATE_URL=prisma+postgres://localhost:%s/?api_key=…", port)
	w := startWrangler(t, dir, "ACCELERATE_URL:"+accel)

	type product struct {
		ID         int    `json:"id"`
		Name       string `json:"name"`
		PriceCents int    `json:"priceCents"`
	}
	type list struct {
		Products []product `json:"products"`
		Cache    string    `json:"cache"`
	}
	type stats struct {
		Count struct {
			All int `json:"_all"`
		} `json:"_count"`
		Min struct {
			PriceCents int `json:"priceCents"`
		} `json:"_min"`
	}
	// Wait on an uncached route, so the first cached read below is the first one the pool sees.
	var before stats
	w.waitServing(t, "/stats", func() error { return w.get("/stats", &before) })
	if before.Count.All != 3 || before.Min.PriceCents != 275 {
		t.Errorf("GET /stats = %+v, want 3 products, cheapest 275", before)
	}
	var first list
	if err := w.get("/products", &first); err != nil {
		t.Fatal(err)
	}
	if len(first.Products) != 3 || first.Products[0] != (product{1, "edge latte", 450}) || first.Cache != "miss" {
		t.Errorf("first GET /products = %+v, want the 3 sample products, cache miss", first)
	}
	var again list
	if err := w.get("/products", &again); err != nil || len(again.Products) != 3 || again.Cache != "ttl" {
		t.Errorf("second GET /products = %+v, %v; want the same products from the cache (ttl)", again, err)
	}
	var cheap list
	if err := w.get("/products?max_price=300", &cheap); err != nil || len(cheap.Products) != 1 || cheap.Cache != "miss" {
		t.Errorf("GET /products?max_price=300 = %+v, %v; want 1 product, a different cache entry (miss)", cheap, err)
	}
	var one struct {
		Product product `json:"product"`
		Cache   string  `json:"cache"`
	}
	if err := w.get("/products/2", &one); err != nil || one.Product != (product{2, "serverless scone", 325}) {
		t.Errorf("GET /products/2 = %+v, %v", one, err)
	}
	var missing map[string]any
	if err := w.do(http.MethodGet, "/products/999", nil, http.StatusNotFound, &missing); err != nil {
		t.Error(err)
	}

	// A write in a batch transaction, then $accelerate.invalidate({tags:["products"]}): the next
	// list is fresh (a miss with the new product), not the cached three.
	var created struct {
		Product product `json:"product"`
		Count   int     `json:"count"`
	}
	if err := w.do(http.MethodPost, "/products", map[string]any{"name": "queue quiche", "priceCents": 390}, http.StatusCreated, &created); err != nil {
		t.Fatal(err)
	}
	if created.Product.Name != "queue quiche" || created.Product.ID == 0 || created.Count != 4 {
		t.Errorf("POST /products = %+v", created)
	}
	// The pool's sample data is shared with TestCloudflareWorker: the product goes again at the end.
	defer func() {
		var gone struct{ Product product }
		if err := w.do(http.MethodDelete, fmt.Sprintf("/products/%d", created.Product.ID), nil, http.StatusOK, &gone); err != nil {
			t.Error(err)
		}
		var after list
		if err := w.get("/products", &after); err != nil || len(after.Products) != 3 {
			t.Errorf("GET /products after DELETE = %+v, %v; want the 3 sample products", after, err)
		}
		if err := w.do(http.MethodDelete, fmt.Sprintf("/products/%d", created.Product.ID), nil, http.StatusNotFound, &missing); err != nil {
			t.Errorf("second DELETE: %v (want 404 from P2025)", err)
		}
	}()
	var fresh list
	if err := w.get("/products", &fresh); err != nil || len(fresh.Products) != 4 || fresh.Cache != "miss" {
		t.Errorf("GET /products after the write and invalidate = %+v, %v; want 4 products, cache miss", fresh, err)
	}
	var after stats
	if err := w.get("/stats", &after); err != nil || after.Count.All != 4 || after.Min.PriceCents != 275 {
		t.Errorf("GET /stats = %+v, %v", after, err)
	}
}
