//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/localenv"
)

// TestCloudflareWorker runs examples/cloudflare-worker under `wrangler dev` (a real workerd)
// against a pool, with DATABASE_URL and HTTP_URL taken from the pool's app Secret (host and port
// made local), and checks both routes: pg over TCP and neon() over HTTP. The user "worker" in
// those URLs is an API key name PostgreSQL does not know, so an answer can only come through
// the pool. Node dependencies: hack/install-node-deps.sh examples/cloudflare-worker (make test-worker runs it).
func TestCloudflareWorker(t *testing.T) {
	ctx := context.Background()
	dir, _ := filepath.Abs("../../examples/cloudflare-worker")
	wrangler := filepath.Join(dir, "node_modules", ".bin", "wrangler")
	if _, err := os.Stat(wrangler); err != nil {
		t.Fatalf("wrangler not installed (run hack/install-node-deps.sh examples/cloudflare-worker): %v", err)
	}

	db, err := env.CreateDatabase(ctx, "edge", "edge_app", localenv.SampleSchema)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := localenv.ReadManifests("testdata/worker")
	if err != nil {
		t.Fatal(err)
	}
	env.PointSamplesAt(objs, db)
	if err := localenv.Apply(ctx, env.Client, namespace, objs); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitReady(ctx, namespace, "edge", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	secret, err := env.AppSecret(ctx, namespace, "edge", "worker")
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pgAddr, err := env.Kubelet.WaitServiceAddr(waitCtx, namespace, "edge-pooler", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, err := env.Kubelet.WaitServiceAddr(waitCtx, namespace, "edge-pooler", "http")
	if err != nil {
		t.Fatal(err)
	}
	dbURL, _ := localenv.LocalURL(string(secret.Data["DATABASE_URL"]), pgAddr)
	httpURL, _ := localenv.LocalURL(string(secret.Data["HTTP_URL"]), httpAddr)
	t.Logf("worker secrets (host:port made local): DATABASE_URL=%s HTTP_URL=%s", localenv.Redact(dbURL), httpURL)

	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	inspector, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wrangler, "dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--inspector-port", strconv.Itoa(inspector), "--show-interactive-dev-session=false",
		"--var", "DATABASE_URL:"+dbURL, "--var", "HTTP_URL:"+httpURL)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CI=true", "WRANGLER_SEND_METRICS=false", "NO_COLOR=1",
		"XDG_CONFIG_HOME="+t.TempDir())
	logPath := filepath.Join(t.TempDir(), "wrangler.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("wrangler log:\n%s", readFile(logPath))
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	type answer struct {
		Via      string           `json:"via"`
		Products []map[string]any `json:"products"`
		Error    string           `json:"error"`
	}
	get := func(path string) (answer, error) {
		var a answer
		resp, err := http.Get(base + path)
		if err != nil {
			return a, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return a, fmt.Errorf("%s: %s %s", path, resp.Status, body)
		}
		err = json.Unmarshal(body, &a)
		return a, err
	}
	start := time.Now()
	var tcp answer
	eventually(t, 120*time.Second, "wrangler dev serving /products/tcp", func() error {
		select {
		case <-exited:
			t.Fatalf("wrangler dev exited:\n%s", readFile(logPath))
		default:
		}
		tcp, err = get("/products/tcp")
		return err
	})
	t.Logf("worker answered after %v", time.Since(start).Round(time.Millisecond))
	if tcp.Via != "pg over TCP" || len(tcp.Products) != 3 || tcp.Products[0]["name"] != "edge latte" {
		t.Errorf("/products/tcp = %+v", tcp)
	}
	viaHTTP, err := get("/products/http?max_price=400")
	if err != nil {
		t.Fatal(err)
	}
	if viaHTTP.Via != "neon() over HTTP" || len(viaHTTP.Products) != 2 || viaHTTP.Products[0]["name"] != "serverless scone" {
		t.Errorf("/products/http = %+v", viaHTTP)
	}
	if tcp2, err := get("/products/tcp?max_price=300"); err != nil || len(tcp2.Products) != 1 {
		t.Errorf("/products/tcp?max_price=300 = %+v, %v", tcp2, err)
	}
	if !strings.Contains(readFile(logPath), "Ready on") {
		t.Logf("wrangler log:\n%s", readFile(logPath))
	}
}
