// Command demo runs the whole of edgepool locally (`make demo`): a throwaway PostgreSQL with a
// sample schema, the envtest control plane, the operator, config/samples applied and the
// poolers run by the local kubelet harness; then it prints how to connect and stays up until
// Ctrl-C, which tears everything down.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgepool/edgepool/internal/localenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	repo := flag.String("repo", ".", "repository root (config/, hack/, bin/)")
	namespace := flag.String("namespace", "default", "namespace the samples are applied to")
	verbose := flag.Bool("v", false, "log the local kubelet and every rewrite to the terminal as well")
	flag.Parse()
	started := time.Now()
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "edgepool-demo-")
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var handler slog.Handler = slog.NewTextHandler(logFile, nil)
	if *verbose {
		handler = slog.NewTextHandler(io.MultiWriter(logFile, os.Stderr), nil)
	}
	log := slog.New(handler)
	say := func(format string, args ...any) {
		fmt.Printf("%s  "+format+"\n", append([]any{time.Since(started).Round(time.Second)}, args...)...)
	}
	say("edgepool demo: log (every harness rewrite is listed there): %s", logPath)

	samples, err := localenv.ReadManifests(filepath.Join(root, "config", "samples"))
	if err != nil {
		return fmt.Errorf("read config/samples: %w", err)
	}
	region, poolName := "local", ""
	for _, o := range samples {
		if o.GetKind() == "ConnectionPool" {
			poolName = o.GetName()
			if r, ok := o.Object["spec"].(map[string]any)["region"].(string); ok {
				region = r
			}
		}
	}
	if poolName == "" {
		return fmt.Errorf("config/samples has no ConnectionPool")
	}

	say("starting: envtest binaries (first run builds kube-apiserver and etcd from the Go module proxy: ~7 minutes on 2 cores; progress below)")
	env, err := localenv.Start(ctx, localenv.Options{RepoRoot: root, Region: region, Dir: dir, Log: log, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping: poolers, operator, control plane, PostgreSQL ...")
		pids := knownPIDs(env)
		env.Close()
		_ = os.RemoveAll(dir)
		reportLeftovers(say, pids)
	}()
	say("control plane, operator (pid %d) and local kubelet are up", env.ManagerPID())

	db, err := env.CreateDatabase(ctx, "shop", "shop_app", localenv.SampleSchema)
	if err != nil {
		return err
	}
	say("PostgreSQL 15 on %s with database %q (table products) and role %q", env.Postgres.Addr(), db.Name, db.User)
	env.PointSamplesAt(samples, db)
	say("config/samples rewritten for the local database (upstream host/port/sslMode, credentials): see the log")
	if err := localenv.Apply(ctx, env.Client, *namespace, samples); err != nil {
		return err
	}
	say("applied config/samples to namespace %q; waiting for ConnectionPool %s to be Ready ...", *namespace, poolName)
	if _, err := env.WaitReady(ctx, *namespace, poolName, 3*time.Minute); err != nil {
		return err
	}
	say("ConnectionPool %s is Ready", poolName)

	secret, err := env.AppSecret(ctx, *namespace, poolName, "default")
	if err != nil {
		return err
	}
	svc := poolName + "-pooler"
	pgAddr, err := env.Kubelet.WaitServiceAddr(ctx, *namespace, svc, "postgres")
	if err != nil {
		return err
	}
	dbURL := string(secret.Data["DATABASE_URL"])
	localDB, err := localenv.LocalURL(dbURL, pgAddr)
	if err != nil {
		return err
	}
	caPath := ""
	if _, ok := secret.Data["ca.crt"]; ok {
		if caPath, err = env.WriteCA(secret); err != nil {
			return err
		}
	}

	kubectl := "kubectl --kubeconfig " + env.Kubeconfig
	fmt.Println()
	fmt.Println("================ edgepool is running ================")
	fmt.Printf("kubeconfig:  %s\n\n", env.Kubeconfig)
	fmt.Printf("$ %s get cpool\n", kubectl)
	if out, err := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig, "get", "cpool", "-n", *namespace).CombinedOutput(); err == nil {
		fmt.Println(strings.TrimRight(string(out), "\n"))
	} else {
		fmt.Printf("(kubectl not available: %v)\n", err)
	}
	fmt.Printf("\nSecret %s/%s (what an app mounts):\n", *namespace, secret.Name)
	fmt.Printf("  DATABASE_URL (in-cluster) = %s\n", dbURL)
	fmt.Printf("  DATABASE_URL (local)      = %s\n", localDB)
	fmt.Printf("    local: the Service %s:5432 is forwarded to %s by the local kubelet harness;\n", svc, pgAddr)
	fmt.Printf("    only host and port are rewritten.\n")
	var localHTTP, httpAddr string
	if raw, ok := secret.Data["HTTP_URL"]; ok {
		httpAddr, err = env.Kubelet.WaitServiceAddr(ctx, *namespace, svc, "http")
		if err != nil {
			return err
		}
		localHTTP, _ = localenv.LocalURL(string(raw), httpAddr)
		fmt.Printf("  HTTP_URL (in-cluster)     = %s\n", raw)
		fmt.Printf("  HTTP_URL (local)          = %s   (Service port http forwarded to %s)\n", localHTTP, httpAddr)
	}
	if caPath != "" {
		fmt.Printf("  ca.crt                    → %s\n", caPath)
	}

	fmt.Println("\nTry it (copy-paste):")
	fmt.Printf("  psql '%s' -c 'select * from products'\n", localDB)
	if caPath != "" {
		verify, _ := localenv.VerifyFullDSN(dbURL, pgAddr, caPath)
		fmt.Printf("  # verifying the pooler's certificate for its in-cluster name (hostaddr: where to connect):\n")
		fmt.Printf("  psql '%s' -c 'select count(*) from products'\n", verify)
	}
	if localHTTP != "" {
		// curl connects to the forwarder and verifies the certificate for the in-cluster name.
		target, curlTLS := localHTTP, ""
		if caPath != "" {
			target = string(secret.Data["HTTP_URL"])
			curlTLS = fmt.Sprintf("--cacert %s --connect-to ::%s ", caPath, httpAddr)
		}
		fmt.Printf("  # local URL: %s\n", localHTTP)
		fmt.Printf("  curl %s%s \\\n", curlTLS, target)
		fmt.Printf("    -H 'Authorization: Bearer %s' \\\n", secret.Data["API_KEY"])
		fmt.Printf("    -H 'Neon-Connection-String: %s' \\\n", dbURL)
		fmt.Printf("    -d '{\"query\":\"select * from products where price_cents < $1\",\"params\":[400]}'\n")
	}
	fmt.Printf("  %s get cpool,deploy,svc,secret\n", kubectl)
	fmt.Printf("  %s scale cpool %s --replicas 3     # three pooler processes, budget split\n", kubectl, poolName)
	fmt.Printf("\nProcesses: operator pid %d; poolers:", env.ManagerPID())
	for _, p := range env.Kubelet.Pods(*namespace, svc) {
		fmt.Printf(" %s (pid %d)", p.Name, p.PID)
	}
	fmt.Printf("\nStarted in %s. Press Ctrl-C to stop and clean up.\n", time.Since(started).Round(time.Second))
	<-ctx.Done()
	fmt.Println()
	return nil
}

// knownPIDs are the processes the demo started (directly or through the harness), checked
// after teardown.
func knownPIDs(env *localenv.Env) []int {
	pids := []int{env.ManagerPID()}
	for _, p := range env.Kubelet.AllPods() {
		if p.PID != 0 {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// reportLeftovers checks with ps that nothing the demo started survived teardown.
func reportLeftovers(say func(string, ...any), pids []int) {
	ps := exec.Command("ps", "-o", "pid=,args=", "--ppid", strconv.Itoa(os.Getpid()))
	out, err := ps.Output()
	var left []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, strconv.Itoa(ps.Process.Pid)+" ") {
			left = append(left, line)
		}
	}
	children := strings.Join(left, "; ")
	var alive []string
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			alive = append(alive, strconv.Itoa(pid))
		}
	}
	switch {
	case err != nil && children == "" && len(alive) == 0:
		say("stopped: no child processes left (ps --ppid %d)", os.Getpid())
	case children == "" && len(alive) == 0:
		say("stopped: no child processes left (ps --ppid %d), operator and poolers gone", os.Getpid())
	default:
		say("WARNING: processes left behind: children %q, still alive %v", children, alive)
	}
}
