//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/localenv"
	"github.com/edgepool/edgepool/internal/localkubelet"
	"github.com/edgepool/edgepool/internal/testutil"
)

// userPath carries what one step hands to the next.
type userPath struct {
	secret *corev1.Secret // app Secret of key "default"
	caFile string
	svc    string // in-cluster host name of the Service (PGHOST)
}

// TestUserPath walks the README's path, step by step.
func TestUserPath(t *testing.T) {
	ctx := context.Background()
	var up userPath
	// A failed step stops the walk when later steps build on it (required); the others let it
	// go on, so one broken feature does not hide the state of the rest.
	steps := []struct {
		name     string
		run      func(t *testing.T)
		required bool
	}{
		{"apply", func(t *testing.T) { stepApply(ctx, t) }, true},
		{"ready", func(t *testing.T) { stepReady(ctx, t) }, true},
		{"read secret", func(t *testing.T) { stepReadSecret(ctx, t, &up) }, true},
		{"pgx over TLS with the generated CA", func(t *testing.T) { stepPgx(ctx, t, &up) }, false},
		{"psql over TLS with the generated CA", func(t *testing.T) { stepPsql(t, &up) }, false},
		{"HTTP /sql", func(t *testing.T) { stepHTTP(t, &up) }, false},
		{"scale 1 to 3", func(t *testing.T) { stepScale(ctx, t, &up) }, true},
		{"rotate a key", func(t *testing.T) { stepRotate(ctx, t, &up) }, false},
		{"disable a key", func(t *testing.T) { stepDisable(ctx, t, &up) }, false},
		{"change the credentials Secret", func(t *testing.T) { stepCredentials(ctx, t, &up) }, false},
		{"delete the pool", func(t *testing.T) { stepDelete(ctx, t) }, false},
	}
	for _, s := range steps {
		start := time.Now()
		ok := t.Run(s.name, s.run)
		t.Logf("step %q: %v", s.name, time.Since(start).Round(time.Millisecond))
		if !ok && s.required {
			t.Fatalf("step %q failed; later steps depend on it (operator log %s, harness log %s)", s.name, env.ManagerLog, logPath)
		}
	}
}

func stepApply(ctx context.Context, t *testing.T) {
	objs, err := localenv.ReadManifests("testdata/shop")
	if err != nil {
		t.Fatal(err)
	}
	env.PointSamplesAt(objs, database)
	if err := localenv.Apply(ctx, env.Client, namespace, objs); err != nil {
		t.Fatal(err)
	}
}

func getPool(ctx context.Context, t *testing.T) *poolingv1alpha1.ConnectionPool {
	t.Helper()
	var pool poolingv1alpha1.ConnectionPool
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: poolName}, &pool); err != nil {
		t.Fatal(err)
	}
	return &pool
}

func updatePool(ctx context.Context, t *testing.T, change func(*poolingv1alpha1.ConnectionPool)) {
	t.Helper()
	pool := getPool(ctx, t)
	before := pool.DeepCopy()
	change(pool)
	if err := env.Client.Patch(ctx, pool, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// waitPool waits until the pool is Ready at its current generation with want ready replicas.
func waitPool(ctx context.Context, t *testing.T, want int32) *poolingv1alpha1.ConnectionPool {
	t.Helper()
	var pool *poolingv1alpha1.ConnectionPool
	testutil.EventuallyNoError(t, fmt.Sprintf("pool Ready with %d replicas", want), 90*time.Second, func() error {
		pool = getPool(ctx, t)
		c := meta.FindStatusCondition(pool.Status.Conditions, poolingv1alpha1.ConditionReady)
		if c == nil || c.Status != "True" || c.ObservedGeneration != pool.Generation || pool.Status.ReadyReplicas != want {
			return fmt.Errorf("phase %q ready %d/%d conditions %+v", pool.Status.Phase, pool.Status.ReadyReplicas, want, pool.Status.Conditions)
		}
		return nil
	})
	return pool
}

func stepReady(ctx context.Context, t *testing.T) {
	pool := waitPool(ctx, t, 1)
	if pool.Status.Phase != "Ready" {
		t.Errorf("phase %q, want Ready", pool.Status.Phase)
	}
	if c := meta.FindStatusCondition(pool.Status.Conditions, poolingv1alpha1.ConditionUpstreamReachable); c == nil || c.Status != "True" {
		t.Errorf("UpstreamReachable = %+v", c)
	}
	// kubectl sees what a user sees.
	out, err := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig, "get", "cpool", poolName, "-n", namespace).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get cpool: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Ready") || !strings.Contains(string(out), region) {
		t.Errorf("kubectl get cpool:\n%s", out)
	}
	t.Logf("kubectl get cpool:\n%s", out)
}

func stepReadSecret(ctx context.Context, t *testing.T, up *userPath) {
	s, err := env.AppSecret(ctx, namespace, poolName, "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"API_KEY", "DATABASE_URL", "HTTP_URL", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER",
		"PGPASSWORD", "PGSSLMODE", "ca.crt"} {
		if len(s.Data[key]) == 0 {
			t.Errorf("app Secret %s has no %s", s.Name, key)
		}
	}
	if !strings.HasPrefix(string(s.Data["API_KEY"]), "ep_") {
		t.Errorf("API_KEY lacks the ep_ prefix")
	}
	u, err := url.Parse(string(s.Data["DATABASE_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := u.User.Password(); pw != string(s.Data["API_KEY"]) || u.Hostname() != string(s.Data["PGHOST"]) {
		t.Errorf("DATABASE_URL does not carry the key and PGHOST")
	}
	up.secret, up.svc = s, string(s.Data["PGHOST"])
	if up.caFile, err = env.WriteCA(s); err != nil {
		t.Fatal(err)
	}
}

// serviceAddr is the local forwarder standing in for the pool's Service port.
func serviceAddr(t *testing.T, port string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := env.Kubelet.WaitServiceAddr(ctx, namespace, poolName+"-pooler", port)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// connConfig connects as user/key to the pool's Service by its in-cluster name, verifying the
// pooler's certificate for that name against the generated CA (sslmode verify-full); only the
// name's resolution is local (127.0.0.1, the Service's forwarder port).
func connConfig(t *testing.T, up *userPath, user, key string) *pgx.ConnConfig {
	t.Helper()
	_, port, _ := net.SplitHostPort(serviceAddr(t, "postgres"))
	dsn := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=verify-full&sslrootcert=%s&connect_timeout=5",
		url.PathEscape(user), url.QueryEscape(key), net.JoinHostPort(up.svc, port), database.Name, up.caFile)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	return cfg
}

// query runs one query through the pool as user/key.
func query(ctx context.Context, t *testing.T, up *userPath, user, key, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, connConfig(t, up, user, key))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var out string
	err = conn.QueryRow(ctx, sql).Scan(&out)
	return out, err
}

func stepPgx(ctx context.Context, t *testing.T, up *userPath) {
	got, err := query(ctx, t, up, "default", string(up.secret.Data["API_KEY"]), "select count(*)::text from products")
	if err != nil {
		t.Fatal(err)
	}
	if got != "3" {
		t.Errorf("count = %s, want 3", got)
	}
	// Extended protocol with parameters, and a transaction, through the pool.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, connConfig(t, up, "default", string(up.secret.Data["API_KEY"])))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if !conn.PgConn().Conn().(*tls.Conn).ConnectionState().HandshakeComplete {
		t.Error("connection is not TLS")
	}
	var name string
	if err := conn.QueryRow(cctx, "select name from products where price_cents = $1", 325).Scan(&name); err != nil || name != "serverless scone" {
		t.Errorf("parameterised query: %q %v", name, err)
	}
	// A wrong key is refused.
	if _, err := query(ctx, t, up, "default", "ep_wrong", "select 1::text"); !isAuthError(err) {
		t.Errorf("wrong key: %v, want an authentication error", err)
	}
}

func isAuthError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28")
}

func stepPsql(t *testing.T, up *userPath) {
	// The app Secret's libpq variables, as envFrom gives them to a pod; only where to connect
	// (PGHOSTADDR, PGPORT: the Service's local forwarder) and the CA file are added, and the
	// sslmode is raised to verify-full to check the certificate against PGHOST.
	_, port, _ := net.SplitHostPort(serviceAddr(t, "postgres"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-A", "-t", "-c", "select string_agg(name, ',' order by id) from products")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PGCONNECT_TIMEOUT=5"}
	for _, k := range []string{"PGHOST", "PGDATABASE", "PGUSER", "PGPASSWORD"} {
		cmd.Env = append(cmd.Env, k+"="+string(up.secret.Data[k]))
	}
	cmd.Env = append(cmd.Env, "PGHOSTADDR=127.0.0.1", "PGPORT="+port, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+up.caFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "edge latte,serverless scone,regional croissant" {
		t.Errorf("psql printed %q", got)
	}
	// And the DATABASE_URL itself (sslmode=require), with only host and port made local.
	local, err := localenv.LocalURL(string(up.secret.Data["DATABASE_URL"]), serviceAddr(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, "psql", local, "-XAtc", "select current_user || ' ' || current_database()").CombinedOutput()
	if err != nil {
		t.Fatalf("psql DATABASE_URL: %v\n%s", err, out)
	}
	t.Logf("psql DATABASE_URL → %s", strings.TrimSpace(string(out)))
}

func httpClient(up *userPath) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(up.secret.Data["ca.crt"])
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: up.svc},
	}}
}

func stepHTTP(t *testing.T, up *userPath) {
	httpURL, err := localenv.LocalURL(string(up.secret.Data["HTTP_URL"]), serviceAddr(t, "http"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"query":"select name, price_cents from products where price_cents < $1 order by id","params":[400]}`
	req, _ := http.NewRequest(http.MethodPost, httpURL, strings.NewReader(body))
	req.Header.Set("Neon-Connection-String", string(up.secret.Data["DATABASE_URL"]))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient(up).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Command  string           `json:"command"`
		RowCount *int             `json:"rowCount"`
		Rows     []map[string]any `json:"rows"`
		Fields   []map[string]any `json:"fields"`
	}
	raw := new(bytes.Buffer)
	_, _ = raw.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /sql: %s %s", resp.Status, raw)
	}
	if err := json.Unmarshal(raw.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if got.Command != "SELECT" || len(got.Rows) != 2 || got.Rows[0]["name"] != "serverless scone" || got.Rows[1]["price_cents"] != float64(275) {
		t.Errorf("response %s", raw)
	}

	// Bearer auth with the key, and a refused key.
	for _, tc := range []struct {
		key  string
		want int
	}{{string(up.secret.Data["API_KEY"]), http.StatusOK}, {"ep_wrong", 0}} {
		req, _ := http.NewRequest(http.MethodPost, httpURL, strings.NewReader(`{"query":"select 1 as one","params":[]}`))
		u, _ := url.Parse(string(up.secret.Data["DATABASE_URL"]))
		u.User = url.UserPassword("default", tc.key)
		req.Header.Set("Neon-Connection-String", u.String())
		req.Header.Set("Authorization", "Bearer "+tc.key)
		resp, err := httpClient(up).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tc.want == http.StatusOK && resp.StatusCode != http.StatusOK {
			t.Errorf("bearer with the key: %s", resp.Status)
		}
		if tc.want == 0 && resp.StatusCode == http.StatusOK {
			t.Errorf("wrong key accepted over HTTP")
		}
	}
}

func runningPods() []localkubelet.Pod {
	var out []localkubelet.Pod
	for _, p := range env.Kubelet.Pods(namespace, poolName+"-pooler") {
		if !p.Terminating {
			out = append(out, p)
		}
	}
	return out
}

func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// poolSize reads pool.size from the pooler config the operator rendered, and from what each
// replica's process reads.
func poolSizes(ctx context.Context, t *testing.T) (rendered int, perReplica []int) {
	t.Helper()
	var s corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: poolName + "-pooler-config"}, &s); err != nil {
		t.Fatal(err)
	}
	size := func(b []byte) int {
		var cfg struct {
			Pool struct {
				Size int `json:"size"`
			} `json:"pool"`
		}
		_ = json.Unmarshal(b, &cfg)
		return cfg.Pool.Size
	}
	for _, p := range runningPods() {
		b, _ := os.ReadFile(filepath.Join(p.Dir, "volumes", "config", "pooler.json"))
		perReplica = append(perReplica, size(b))
	}
	return size(s.Data["pooler.json"]), perReplica
}

func stepScale(ctx context.Context, t *testing.T, up *userPath) {
	if r, _ := poolSizes(ctx, t); r != 10 {
		t.Errorf("one replica: pool.size %d, want floor(20/(1+1)) = 10 (one replica's share held back)", r)
	}
	updatePool(ctx, t, func(p *poolingv1alpha1.ConnectionPool) { p.Spec.Replicas = ptr.To[int32](3) })
	pool := waitPool(ctx, t, 3)
	pods := runningPods()
	pids := map[int]bool{}
	for _, p := range pods {
		if p.Ready && alive(p.PID) {
			pids[p.PID] = true
		}
	}
	if len(pods) != 3 || len(pids) != 3 {
		t.Fatalf("want three running pooler processes, have %+v", pods)
	}
	testutil.EventuallyNoError(t, "budget split over three replicas", 20*time.Second, func() error {
		rendered, per := poolSizes(ctx, t)
		if rendered != 5 || len(per) != 3 || per[0] != 5 || per[1] != 5 || per[2] != 5 {
			return fmt.Errorf("pool.size rendered %d, per replica %v; want floor(20/(3+1)) = 5", rendered, per)
		}
		return nil
	})
	if pool.Status.PoolSizePerReplica != 5 {
		t.Errorf("status.poolSizePerReplica = %d", pool.Status.PoolSizePerReplica)
	}

	// Under load, the upstream never sees more than 3 replicas × 5.
	key := string(up.secret.Data["API_KEY"])
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	stop := make(chan struct{})
	peak := 0
	var peakMu sync.Mutex
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			conn, err := pgconn.Connect(ctx, env.Postgres.DSN("postgres"))
			if err != nil {
				continue
			}
			res, err := conn.Exec(ctx, "select count(*) from pg_stat_activity where usename = 'shop_app'").ReadAll()
			conn.Close(ctx)
			if err == nil && len(res) == 1 && len(res[0].Rows) == 1 {
				var n int
				_, _ = fmt.Sscan(string(res[0].Rows[0][0]), &n)
				peakMu.Lock()
				peak = max(peak, n)
				peakMu.Unlock()
			}
		}
	}()
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := query(ctx, t, up, "default", key, "select pg_sleep(0.3)::text"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Errorf("query under load: %v", err)
	}
	peakMu.Lock()
	defer peakMu.Unlock()
	if peak == 0 || peak > 15 {
		t.Errorf("upstream connections peaked at %d, want 1..15", peak)
	}
	t.Logf("30 concurrent clients over 3 replicas: upstream connections peaked at %d (budget 20, 5 per replica)", peak)
}

// everyReplica runs try once per replica (the Service forwards round-robin, so n consecutive
// connections reach each of n replicas) and reports the first failure.
func everyReplica(try func() error) error {
	for range len(runningPods()) {
		if err := try(); err != nil {
			return err
		}
	}
	return nil
}

func appKey(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	s, err := env.AppSecret(ctx, namespace, poolName, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data["API_KEY"])
}

func keyStatus(ctx context.Context, t *testing.T, name string) poolingv1alpha1.APIKeyStatus {
	t.Helper()
	for _, k := range getPool(ctx, t).Status.APIKeys {
		if k.Name == name {
			return k
		}
	}
	t.Fatalf("no status for key %s", name)
	return poolingv1alpha1.APIKeyStatus{}
}

func stepRotate(ctx context.Context, t *testing.T, up *userPath) {
	oldKey := appKey(ctx, t, "ci")
	works := func(key string) func() error {
		return func() error { _, err := query(ctx, t, up, "ci", key, "select 1::text"); return err }
	}
	if err := everyReplica(works(oldKey)); err != nil {
		t.Fatalf("ci key before rotation: %v", err)
	}
	rotated := time.Now()
	updatePool(ctx, t, func(p *poolingv1alpha1.ConnectionPool) {
		for i := range p.Spec.APIKeys {
			if p.Spec.APIKeys[i].Name == "ci" {
				p.Spec.APIKeys[i].Rotation++
			}
		}
	})
	var newKey string
	testutil.EventuallyNoError(t, "new key issued and accepted by every replica", 20*time.Second, func() error {
		if newKey = appKey(ctx, t, "ci"); newKey == oldKey {
			return errors.New("Secret still holds the old key")
		}
		return everyReplica(works(newKey))
	})
	t.Logf("new key accepted by all replicas %v after the rotation", time.Since(rotated).Round(time.Millisecond))
	if err := everyReplica(works(oldKey)); err != nil {
		t.Fatalf("old key refused during the grace period: %v", err)
	}
	st := keyStatus(ctx, t, "ci")
	if st.PreviousValidUntil == nil {
		t.Fatalf("status of key ci has no previousValidUntil: %+v", st)
	}
	t.Logf("old key valid until %s (grace 12s)", st.PreviousValidUntil.Format(time.RFC3339))
	testutil.EventuallyNoError(t, "old key refused after the grace period", time.Until(st.PreviousValidUntil.Time)+20*time.Second, func() error {
		for range len(runningPods()) {
			if _, err := query(ctx, t, up, "ci", oldKey, "select 1::text"); !isAuthError(err) {
				return fmt.Errorf("old key: %w", err)
			}
		}
		return nil
	})
	if time.Now().Before(st.PreviousValidUntil.Time) {
		t.Errorf("old key refused before its grace period ended")
	}
	if err := everyReplica(works(newKey)); err != nil {
		t.Errorf("new key after the grace period: %v", err)
	}
}

func stepDisable(ctx context.Context, t *testing.T, up *userPath) {
	key := appKey(ctx, t, "old")
	if err := everyReplica(func() error { _, err := query(ctx, t, up, "old", key, "select 1::text"); return err }); err != nil {
		t.Fatalf("key old before disabling: %v", err)
	}
	updatePool(ctx, t, func(p *poolingv1alpha1.ConnectionPool) {
		for i := range p.Spec.APIKeys {
			if p.Spec.APIKeys[i].Name == "old" {
				p.Spec.APIKeys[i].Disabled = true
			}
		}
	})
	testutil.EventuallyNoError(t, "disabled key refused by every replica", 20*time.Second, func() error {
		for range len(runningPods()) {
			if _, err := query(ctx, t, up, "old", key, "select 1::text"); !isAuthError(err) {
				return fmt.Errorf("disabled key: %w", err)
			}
		}
		return nil
	})
	// The other keys are unaffected.
	if _, err := query(ctx, t, up, "default", string(up.secret.Data["API_KEY"]), "select 1::text"); err != nil {
		t.Errorf("default key after disabling another: %v", err)
	}
}

func stepCredentials(ctx context.Context, t *testing.T, up *userPath) {
	before := runningPods()
	newPassword := "rotated-" + fmt.Sprint(time.Now().UnixNano())
	if err := env.Postgres.ExecErr(fmt.Sprintf("alter role %s password '%s'", database.User, newPassword)); err != nil {
		t.Fatal(err)
	}
	var creds corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "shop-db"}, &creds); err != nil {
		t.Fatal(err)
	}
	creds.Data["password"] = []byte(newPassword)
	if err := env.Client.Update(ctx, &creds); err != nil {
		t.Fatal(err)
	}
	// Only a reload can work now: every existing upstream connection is cut once, and no new one
	// can be opened with the old password, so the poolers must open new ones with the new
	// password. Queries meanwhile may meet a cut connection (57P01) or wait for the reload.
	if err := env.Postgres.ExecErr("select pg_terminate_backend(pid) from pg_stat_activity where usename = '" + database.User + "'"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Poll(30*time.Second, func() error {
		return everyReplica(func() error {
			_, err := query(ctx, t, up, "default", string(up.secret.Data["API_KEY"]), "select count(*)::text from products")
			return err
		})
	}); err != nil {
		var said []string
		for _, p := range before {
			for _, line := range strings.Split(readFile(p.LogPath), "\n") {
				if strings.Contains(line, "reload") || strings.Contains(line, "restart") {
					said = append(said, p.Name+": "+line)
				}
			}
		}
		t.Fatalf("queries through the pool still fail 30s after the credentials change: %v\nthe poolers said:\n%s",
			err, strings.Join(said, "\n"))
	}
	after := runningPods()
	if len(after) != len(before) {
		t.Fatalf("replicas before %+v, after %+v", before, after)
	}
	for i := range after {
		if after[i].PID != before[i].PID || after[i].Restarts != 0 || after[i].TemplateHash != before[i].TemplateHash {
			t.Errorf("replica %s restarted: before pid %d, after %+v", before[i].Name, before[i].PID, after[i])
		}
	}
	waitPool(ctx, t, int32(len(after)))
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func stepDelete(ctx context.Context, t *testing.T) {
	pods := runningPods()
	pool := getPool(ctx, t)
	if err := env.Client.Delete(ctx, pool); err != nil {
		t.Fatal(err)
	}
	children := []client.Object{
		&appsv1.Deployment{}, &corev1.Service{},
		&corev1.Secret{}, &corev1.Secret{}, &corev1.Secret{}, &corev1.Secret{}, &corev1.Secret{},
	}
	names := []string{poolName + "-pooler", poolName + "-pooler", poolName + "-pooler-config", poolName + "-tls",
		poolName + "-default", poolName + "-ci", poolName + "-old"}
	testutil.EventuallyNoError(t, "processes stopped and children gone", 60*time.Second, func() error {
		for _, p := range pods {
			if alive(p.PID) {
				return fmt.Errorf("pooler %s (pid %d) still running", p.Name, p.PID)
			}
		}
		if left := env.Kubelet.Pods(namespace, poolName+"-pooler"); len(left) != 0 {
			return fmt.Errorf("replicas left: %+v", left)
		}
		for i, obj := range children {
			err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: names[i]}, obj)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%w)", obj, names[i], err)
			}
		}
		return nil
	})
	// The user's own Secret is theirs: it stays.
	var creds corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "shop-db"}, &creds); err != nil {
		t.Errorf("credentials Secret: %v", err)
	}
}
