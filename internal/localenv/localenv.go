// Package localenv runs the whole of edgepool on one machine, from real parts: a throwaway
// PostgreSQL (internal/pgserver), the envtest control plane (kube-apiserver + etcd) with the
// ConnectionPool CRD installed, the operator (`bin/edgepool manager`, a separate process), and
// the local kubelet harness (internal/localkubelet) running the pooler Deployments as
// `bin/edgepool pooler` processes. `make demo` and the e2e suite use it.
package localenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	poolingv1alpha1 "github.com/edgepool/edgepool/api/v1alpha1"
	"github.com/edgepool/edgepool/internal/envtestbin"
	"github.com/edgepool/edgepool/internal/localkubelet"
	"github.com/edgepool/edgepool/internal/pgserver"
)

// Options configure Start.
type Options struct {
	// RepoRoot is the repository checkout (for hack/, config/crd and bin/).
	RepoRoot string
	// Binary is the edgepool binary; RepoRoot/bin/edgepool when empty. It must exist.
	Binary string
	// Region labels the local node (topology.kubernetes.io/region), so pools of that region
	// find a node; "local" when empty.
	Region string
	// Dir holds the kubeconfig, logs and the kubelet's work dir; a temp dir when empty.
	Dir string
	// Log receives progress and the harness's log.
	Log *slog.Logger
	// Progress receives the envtest binary build's progress (stderr of
	// hack/envtest-binaries.sh); os.Stderr when nil.
	Progress *os.File
}

// Env is a running local edgepool.
type Env struct {
	Postgres   *pgserver.Server
	Config     *rest.Config
	Client     client.Client
	Kubeconfig string // path of an admin kubeconfig for kubectl
	Kubelet    *localkubelet.Kubelet
	Dir        string
	// ManagerLog is the operator's log file.
	ManagerLog string

	opts     Options
	log      *slog.Logger
	ownsDir  bool
	control  *envtest.Environment
	manager  *exec.Cmd
	mgrDone  chan struct{}
	cleanups []func()
}

// Scheme knows the built-in kinds and ConnectionPool.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = poolingv1alpha1.AddToScheme(s)
	return s
}

// Start brings everything up. On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	// controller-runtime (envtest, the harness's cache) logs through its global logger.
	ctrllog.SetLogger(logr.FromSlogHandler(opts.Log.Handler()))
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	if opts.Region == "" {
		opts.Region = "local"
	}
	if opts.Binary == "" {
		opts.Binary = filepath.Join(opts.RepoRoot, "bin", "edgepool")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("edgepool binary: %w (run make build)", err)
	}
	e := &Env{opts: opts, log: opts.Log, Dir: opts.Dir}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.Dir == "" {
		if e.Dir, err = os.MkdirTemp("", "edgepool-local-"); err != nil {
			return nil, err
		}
		e.ownsDir = true
	}

	step := func(what string) func() {
		start := time.Now()
		e.log.Info(what + " ...")
		return func() { e.log.Info(what+" done", "took", time.Since(start).Round(time.Millisecond)) }
	}

	done := step("envtest binaries (kube-apiserver, etcd)")
	assets, err := envtestbin.Dir(opts.RepoRoot, opts.Progress)
	if err != nil {
		return nil, err
	}
	done()

	done = step("PostgreSQL 15 (throwaway)")
	if e.Postgres, err = pgserver.New(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	e.cleanups = append(e.cleanups, e.Postgres.Close)
	done()

	done = step("control plane (envtest: kube-apiserver + etcd, CRDs from config/crd/bases)")
	e.control = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(opts.RepoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if e.Config, err = e.control.Start(); err != nil {
		return nil, fmt.Errorf("envtest: %w", err)
	}
	e.cleanups = append(e.cleanups, func() { _ = e.control.Stop() })
	if e.Client, err = client.New(e.Config, client.Options{Scheme: Scheme()}); err != nil {
		return nil, err
	}
	if err := e.writeKubeconfig(); err != nil {
		return nil, err
	}
	done()

	done = step("operator (bin/edgepool manager)")
	if err := e.startManager(); err != nil {
		return nil, err
	}
	done()

	done = step("local kubelet (runs pooler Deployments as bin/edgepool processes)")
	klog := opts.Log
	e.Kubelet, err = localkubelet.Start(ctx, e.Config, localkubelet.Options{
		Commands:       map[string]string{"/edgepool": opts.Binary},
		WorkDir:        filepath.Join(e.Dir, "kubelet"),
		Log:            klog,
		Node:           &localkubelet.NodeOptions{Name: "local", Labels: map[string]string{"topology.kubernetes.io/region": opts.Region, "topology.kubernetes.io/zone": opts.Region + "-a"}},
		GarbageCollect: true,
	})
	if err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, e.Kubelet.Stop)
	done()
	return e, nil
}

func (e *Env) writeKubeconfig() error {
	user, err := e.control.AddUser(envtest.User{Name: "edgepool-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("kubeconfig user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	return os.WriteFile(e.Kubeconfig, kc, 0o600)
}

// startManager runs the operator as its own process, as it runs in a cluster, pointed at the
// control plane through KUBECONFIG.
func (e *Env) startManager() error {
	probePort, err := FreePort()
	if err != nil {
		return err
	}
	e.ManagerLog = filepath.Join(e.Dir, "manager.log")
	logFile, err := os.Create(e.ManagerLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(e.opts.Binary, "manager",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort),
		"--pooler-image=ghcr.io/edgepool/edgepool:local")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start manager: %w", err)
	}
	logFile.Close()
	e.manager, e.mgrDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.mgrDone) }()
	e.cleanups = append(e.cleanups, e.stopManager)
	e.log.Info("operator started", "pid", cmd.Process.Pid, "log", e.ManagerLog)

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-e.mgrDone:
			b, _ := os.ReadFile(e.ManagerLog)
			return fmt.Errorf("manager exited during startup:\n%s", tail(string(b), 3000))
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(probePort), time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("manager: health probe port not up after 60s; see " + e.ManagerLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *Env) stopManager() {
	if e.manager == nil {
		return
	}
	_ = syscall.Kill(-e.manager.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.mgrDone:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-e.manager.Process.Pid, syscall.SIGKILL)
		<-e.mgrDone
	}
}

// ManagerPID is the operator process's id.
func (e *Env) ManagerPID() int { return e.manager.Process.Pid }

// Close stops everything in reverse order: poolers, operator, control plane, PostgreSQL.
func (e *Env) Close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
	if e.ownsDir {
		_ = os.RemoveAll(e.Dir)
	}
}

// FreePort returns a loopback TCP port below the kernel's ephemeral range (32768+) that is
// free right now.
func FreePort() (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
