//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgepool/edgepool/internal/localenv"
	"github.com/edgepool/edgepool/internal/testutil"
)

// TestCloudflareWorker runs examples/cloudflare-worker under `wrangler dev` (a real workerd)
// against a pool, with DATABASE_URL and HTTP_URL taken from the pool's app Secret (host and port
// made local), and checks both routes: pg over TCP and neon() over HTTP. The user "worker" in
// those URLs is an API key name PostgreSQL does not know, so an answer can only come through
// the pool. Node dependencies: hack/install-node-deps.sh examples/cloudflare-worker (make test-worker runs it).
func TestCloudflareWorker(t *testing.T) {
	dir, _ := filepath.Abs("../../examples/cloudflare-worker")
	pool := edgeWorkerPool(t)
	dbURL, _ := localenv.LocalURL(string(pool.secret.Data["DATABASE_URL"]), pool.pgAddr)
	httpURL, _ := localenv.LocalURL(string(pool.secret.Data["HTTP_URL"]), pool.httpAddr)
	t.Logf("worker secrets (host:port made local): DATABASE_URL=%s HTTP_URL=%s", localenv.Redact(dbURL), httpURL)
	w := startWrangler(t, dir, "DATABASE_URL:"+dbURL, "HTTP_URL:"+httpURL)

	type answer struct {
		Via      string           `json:"via"`
		Products []map[string]any `json:"products"`
		Error    string           `json:"error"`
	}
	get := func(path string) (answer, error) {
		var a answer
		err := w.get(path, &a)
		return a, err
	}
	var tcp answer
	w.waitServing(t, "/products/tcp", func() (err error) { tcp, err = get("/products/tcp"); return err })
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
}

// workerPool is the pool the Worker examples run against: testdata/worker (TLS disabled, HTTP
// on) over the database "edge" with the sample schema, made once for the suite.
type workerPool struct {
	secret           *corev1.Secret // the app Secret of key "worker"
	pgAddr, httpAddr string         // local stand-ins for the Service's postgres and http ports
}

var (
	workerPoolOnce sync.Once
	workerPoolVal  *workerPool
	workerPoolErr  error
)

func edgeWorkerPool(t *testing.T) *workerPool {
	t.Helper()
	workerPoolOnce.Do(func() { workerPoolVal, workerPoolErr = newWorkerPool(context.Background()) })
	if workerPoolErr != nil {
		t.Fatal(workerPoolErr)
	}
	return workerPoolVal
}

func newWorkerPool(ctx context.Context) (*workerPool, error) {
	db, err := env.CreateDatabase(ctx, "edge", "edge_app", localenv.SampleSchema)
	if err != nil {
		return nil, err
	}
	objs, err := localenv.ReadManifests("testdata/worker")
	if err != nil {
		return nil, err
	}
	env.PointSamplesAt(objs, db)
	if err := localenv.Apply(ctx, env.Client, namespace, objs); err != nil {
		return nil, err
	}
	if _, err := env.WaitReady(ctx, namespace, "edge", 90*time.Second); err != nil {
		return nil, err
	}
	p := &workerPool{}
	if p.secret, err = env.AppSecret(ctx, namespace, "edge", "worker"); err != nil {
		return nil, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if p.pgAddr, err = env.Kubelet.WaitServiceAddr(waitCtx, namespace, "edge-pooler", "postgres"); err != nil {
		return nil, err
	}
	if p.httpAddr, err = env.Kubelet.WaitServiceAddr(waitCtx, namespace, "edge-pooler", "http"); err != nil {
		return nil, err
	}
	return p, nil
}

// wrangler is a `wrangler dev` (a real workerd) serving a Worker example on a loopback port.
type wrangler struct {
	base    string
	logPath string
	exited  chan struct{}
}

// startWrangler runs `wrangler dev` in dir with vars ("NAME:value") until the test ends.
// Node dependencies: hack/install-node-deps.sh <dir> (make test-worker runs it).
func startWrangler(t *testing.T, dir string, vars ...string) *wrangler {
	t.Helper()
	bin := filepath.Join(dir, "node_modules", ".bin", "wrangler")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("wrangler not installed (run hack/install-node-deps.sh %s): %v", dir, err)
	}
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	inspector, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--inspector-port", strconv.Itoa(inspector), "--show-interactive-dev-session=false"}
	for _, v := range vars {
		args = append(args, "--var", v)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CI=true", "WRANGLER_SEND_METRICS=false", "NO_COLOR=1",
		"XDG_CONFIG_HOME="+t.TempDir())
	w := &wrangler{base: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: filepath.Join(t.TempDir(), "wrangler.log"),
		exited: make(chan struct{})}
	logFile, err := os.Create(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-w.exited
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("wrangler log:\n%s", readFile(w.logPath))
		}
	})
	return w
}

// waitServing retries first (the Worker's first request) until it succeeds: wrangler builds and
// starts workerd in the meantime.
func (w *wrangler) waitServing(t *testing.T, path string, first func() error) {
	t.Helper()
	start := time.Now()
	testutil.EventuallyNoError(t, "wrangler dev serving "+path, 120*time.Second, func() error {
		select {
		case <-w.exited:
			t.Fatalf("wrangler dev exited:\n%s", readFile(w.logPath))
		default:
		}
		return first()
	})
	t.Logf("worker answered after %v", time.Since(start).Round(time.Millisecond))
}

// do sends a request to the Worker and decodes its JSON answer into out; a status other than
// want is an error carrying the body.
func (w *wrangler) do(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

func (w *wrangler) get(path string, out any) error {
	return w.do(http.MethodGet, path, nil, http.StatusOK, out)
}
