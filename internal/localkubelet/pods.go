package localkubelet

import (
	"os"
	"sort"

	"k8s.io/apimachinery/pkg/types"
)

// Pod describes one local replica, for callers that check what runs.
type Pod struct {
	Name         string
	TemplateHash string
	Index        int
	// PID is the current process id (0 before the first start).
	PID int
	// Ready is the readiness probe's verdict.
	Ready bool
	// Terminating is set once the replica was asked to stop.
	Terminating bool
	// Restarts counts exits the harness restarted the process after.
	Restarts int
	// Waiting says why the process has not started yet (e.g. a missing Secret).
	Waiting string
	// Ports maps each container port to the loopback port the process listens on.
	Ports map[int32]int
	// Dir holds the replica's volumes; LogPath its stdout and stderr.
	Dir, LogPath string
}

// Pods lists the replicas of a Deployment that have not exited yet, by template then index.
func (k *Kubelet) Pods(namespace, deployment string) []Pod {
	k.mu.Lock()
	pods := removeExited(append([]*pod(nil), k.pods[types.NamespacedName{Namespace: namespace, Name: deployment}]...))
	k.mu.Unlock()
	out := make([]Pod, 0, len(pods))
	for _, p := range pods {
		p.mu.Lock()
		out = append(out, Pod{Name: p.name, TemplateHash: p.hash, Index: p.index, PID: p.pid,
			Ready: p.ready && !p.terminating, Terminating: p.terminating, Restarts: p.restarts,
			Waiting: p.waiting, Ports: p.ports, Dir: p.dir, LogPath: p.logPath()})
		p.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Log returns what a replica wrote to stdout and stderr so far.
func (p Pod) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// AllPods lists every replica of every Deployment that has not exited yet.
func (k *Kubelet) AllPods() []Pod {
	k.mu.Lock()
	var keys []types.NamespacedName
	for key := range k.pods {
		keys = append(keys, key)
	}
	k.mu.Unlock()
	var out []Pod
	for _, key := range keys {
		out = append(out, k.Pods(key.Namespace, key.Name)...)
	}
	return out
}
