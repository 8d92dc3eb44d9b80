package localkubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// pod is one replica: a local process standing in for a pod of a Deployment.
type pod struct {
	k                     *Kubelet
	name, namespace, node string
	deployment            string
	hash                  string // template hash it was created from
	index                 int
	labels                map[string]string
	spec                  corev1.PodSpec
	container             corev1.Container
	dir                   string
	ports                 map[int32]int // container port → loopback port
	rw                    *rewriter
	volumes               map[string]*volumeDir // by volume name
	log                   *slog.Logger

	mu          sync.Mutex
	launched    bool
	ready       bool
	readySince  time.Time
	terminating bool
	pid         int
	restarts    int
	waiting     string // why the process is not started yet
	stopCh      chan struct{}
	exited      chan struct{} // closed once the process is gone for good
}

func (k *Kubelet) newPod(d *appsv1.Deployment, hash string, index int) (*pod, error) {
	spec := *d.Spec.Template.Spec.DeepCopy()
	c := spec.Containers[0]
	for _, other := range spec.Containers[1:] {
		k.log.Warn("ignoring extra container: only the first one runs", "deployment", d.Name, "container", other.Name)
	}
	for _, ic := range spec.InitContainers {
		k.log.Warn("ignoring init container", "deployment", d.Name, "container", ic.Name)
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		// The preStop sleep lets endpoint removal propagate; the local forwarder drops an
		// unready or stopping replica at once.
		k.log.Info("preStop hook not run: replicas leave the Service forwarder at once", "deployment", d.Name)
	}
	if spec.SecurityContext != nil || c.SecurityContext != nil {
		k.log.Info("security context not applied: the process runs as the harness's user", "deployment", d.Name,
			"uid", os.Getuid())
	}
	name := fmt.Sprintf("%s-%s-%d", d.Name, hash, index)
	dir := filepath.Join(k.workDir, d.Namespace, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &pod{
		k: k, name: name, namespace: d.Namespace, deployment: d.Name, hash: hash, index: index,
		labels: d.Spec.Template.Labels, spec: spec, container: c, dir: dir,
		ports: map[int32]int{}, volumes: map[string]*volumeDir{},
		stopCh: make(chan struct{}), exited: make(chan struct{}),
		node: "localkubelet",
	}
	if k.opts.Node != nil {
		p.node = k.opts.Node.Name
	}
	p.log = k.log.With("pod", d.Namespace+"/"+name)
	for _, cp := range c.Ports {
		if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
			continue
		}
		port, err := k.allocatePort()
		if err != nil {
			k.releasePorts(p)
			return nil, err
		}
		p.ports[cp.ContainerPort] = port
	}
	var mounts []mount
	for _, vm := range c.VolumeMounts {
		host := filepath.Join(dir, "volumes", vm.Name)
		if vm.SubPath != "" {
			host = filepath.Join(host, vm.SubPath)
		}
		mounts = append(mounts, mount{containerPath: strings.TrimSuffix(vm.MountPath, "/"), hostPath: host})
	}
	p.rw = newRewriter(mounts, p.ports)
	return p, nil
}

func (p *pod) portSummary() string {
	var parts []string
	for cp, local := range p.ports {
		parts = append(parts, fmt.Sprintf("%d→127.0.0.1:%d", cp, local))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (p *pod) isReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready && !p.terminating
}

// isAvailable reports a replica ready for at least minReady (a Deployment's minReadySeconds).
func (p *pod) isAvailable(minReady time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready && !p.terminating && time.Since(p.readySince) >= minReady
}

// exitedNow reports a replica whose process is gone for good.
func (p *pod) exitedNow() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *pod) isTerminating() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.terminating
}

func (p *pod) setWaiting(reason string) {
	p.mu.Lock()
	changed := p.waiting != reason
	p.waiting = reason
	p.mu.Unlock()
	if changed {
		p.log.Info("replica waiting", "reason", reason)
	}
}

// launch starts the replica's process supervisor once.
func (p *pod) launch() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.launched || p.terminating {
		return
	}
	p.launched, p.waiting = true, ""
	go p.supervise()
}

// stop asks the replica to terminate (SIGTERM, then SIGKILL after the grace period). It does
// not wait; p.exited is closed when the process is gone.
func (p *pod) stop(reason string) {
	p.mu.Lock()
	if p.terminating {
		p.mu.Unlock()
		return
	}
	p.terminating, p.ready = true, false
	launched := p.launched
	close(p.stopCh)
	p.mu.Unlock()
	p.log.Info("replica stopping", "reason", reason)
	p.k.trigger()
	if !launched {
		p.k.releasePorts(p)
		close(p.exited)
	}
}

// supervise runs the process, restarting it with back-off when it exits, until stop.
func (p *pod) supervise() {
	defer close(p.exited)
	defer p.k.releasePorts(p)
	backoff := time.Second
	for {
		started := time.Now()
		err := p.runOnce()
		select {
		case <-p.stopCh:
			return
		default:
		}
		p.mu.Lock()
		p.restarts++
		p.ready = false
		p.mu.Unlock()
		p.k.trigger()
		if time.Since(started) > 30*time.Second {
			backoff = time.Second
		}
		p.log.Warn("container exited; restarting", "err", err, "backoff", backoff, "log", p.logPath())
		select {
		case <-p.stopCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (p *pod) logPath() string { return filepath.Join(p.dir, "container.log") }

// runOnce starts the process and returns when it has exited (on its own, after failing its
// liveness probe, or because the replica is stopping).
func (p *pod) runOnce() error {
	cmd, err := p.command()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p.mu.Lock()
	p.pid = cmd.Process.Pid
	p.mu.Unlock()
	p.log.Info("container started", "pid", cmd.Process.Pid, "path", cmd.Path, "log", p.logPath())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	probeCtx, cancelProbes := context.WithCancel(context.Background())
	defer cancelProbes()
	livenessFailed := make(chan struct{})
	go p.probeReadiness(probeCtx)
	go p.probeLiveness(probeCtx, livenessFailed)

	select {
	case err := <-exited:
		return fmt.Errorf("exited: %w", err)
	case <-livenessFailed:
		p.log.Warn("liveness probe failed; killing the container")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return fmt.Errorf("liveness probe failed; killed: %w", <-exited)
	case <-p.stopCh:
		grace := 30 * time.Second
		if g := p.spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		grace = min(grace, p.k.opts.MaxTerminationGrace)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-exited:
			p.log.Info("container stopped", "pid", cmd.Process.Pid, "exit", err)
		case <-time.After(grace):
			p.log.Warn("container did not stop within its grace period; killing", "grace", grace)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			p.log.Info("container killed", "pid", cmd.Process.Pid, "exit", <-exited)
		}
		return nil
	}
}

// command builds the process for the container: its command mapped to a local executable,
// args and env with the pod's paths and ports rewritten (each rewrite logged).
func (p *pod) command() (*exec.Cmd, error) {
	c := p.container
	local := p.k.opts.Commands[c.Command[0]]
	argv := append(append([]string{}, c.Command[1:]...), c.Args...)
	env, err := p.k.containerEnv(p)
	if err != nil {
		return nil, err
	}
	args, changes := p.rw.args(argv)
	p.log.Info("rewrite", "where", "command[0]", "from", c.Command[0], "to", local)
	for _, ch := range changes {
		p.log.Info("rewrite", "where", ch.Where, "from", ch.From, "to", ch.To)
	}
	cmd := exec.Command(local, args...)
	cmd.Dir = p.dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// probeTarget resolves an HTTP probe to a local URL.
func (p *pod) probeTarget(probe *corev1.Probe) (string, bool) {
	if probe == nil || probe.HTTPGet == nil {
		return "", false
	}
	g := probe.HTTPGet
	port, ok := p.containerPort(g.Port)
	if !ok {
		return "", false
	}
	local, ok := p.ports[port]
	if !ok {
		return "", false
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, local, g.Path), true
}

func (p *pod) containerPort(port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, cp := range p.container.Ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort, true
		}
	}
	if n, err := strconv.ParseInt(port.StrVal, 10, 32); err == nil {
		return int32(n), true
	}
	return 0, false
}

var probeClient = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // probes, like the kubelet's, do not verify
}

func probeOnce(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// probeReadiness updates p.ready. Without a readiness probe the replica is ready once its
// process runs; a TCP-only or exec probe is treated as passing (logged).
func (p *pod) probeReadiness(ctx context.Context) {
	probe := p.container.ReadinessProbe
	url, ok := p.probeTarget(probe)
	if !ok {
		if probe != nil {
			p.log.Warn("readiness probe is not an HTTP GET on a container port; treating the running process as ready")
		}
		p.setReady(true)
		<-ctx.Done()
		return
	}
	threshold := int32(3)
	if probe.FailureThreshold > 0 {
		threshold = probe.FailureThreshold
	}
	failures := int32(0)
	t := time.NewTicker(p.k.opts.ProbePeriod)
	defer t.Stop()
	for {
		if probeOnce(ctx, url) {
			failures = 0
			p.setReady(true)
		} else {
			failures++
			if failures >= threshold || !p.isReady() {
				p.setReady(false)
			}
		}
		select {
		case <-ctx.Done():
			p.setReady(false)
			return
		case <-t.C:
		}
	}
}

// probeLiveness closes failed when the liveness probe fails failureThreshold times in a row.
func (p *pod) probeLiveness(ctx context.Context, failed chan<- struct{}) {
	probe := p.container.LivenessProbe
	url, ok := p.probeTarget(probe)
	if !ok {
		return
	}
	delay := min(time.Duration(probe.InitialDelaySeconds)*time.Second, 5*time.Second)
	period := max(time.Duration(probe.PeriodSeconds)*time.Second, time.Second)
	threshold := int32(3)
	if probe.FailureThreshold > 0 {
		threshold = probe.FailureThreshold
	}
	// Give the process time to come up before liveness counts, as initialDelaySeconds does
	// (capped) and at least until it has been ready once or 10s have passed.
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.isReady() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	failures := int32(0)
	for {
		if probeOnce(ctx, url) {
			failures = 0
		} else if failures++; failures >= threshold {
			if ctx.Err() == nil {
				close(failed)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func (p *pod) setReady(ready bool) {
	p.mu.Lock()
	changed := p.ready != ready && !p.terminating
	if changed {
		p.ready = ready
		if ready {
			p.readySince = time.Now()
		}
	}
	p.mu.Unlock()
	if changed {
		p.log.Info("replica readiness", "ready", ready)
		p.k.trigger()
	}
}

// allocatePort picks a free loopback port below the ephemeral range (32768+), which the
// kernel may hand to outgoing connections at any time.
func (k *Kubelet) allocatePort() (int, error) {
	k.portsMu.Lock()
	defer k.portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if k.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		k.ports[port] = true
		return port, nil
	}
	return 0, errors.New("no free loopback port in 20000-31999")
}

func (k *Kubelet) releasePorts(p *pod) {
	k.portsMu.Lock()
	defer k.portsMu.Unlock()
	for _, port := range p.ports {
		delete(k.ports, port)
	}
}
