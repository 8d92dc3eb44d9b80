package localkubelet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// A rewrite is one change the harness made to what a process sees, so it can be logged: a
// pod's paths and ports are the pod's, and a local process cannot have them (every replica
// would want :5432, and /etc/edgepool is not ours to write).
type rewrite struct {
	Where    string // "args[2]", "env PGSSLROOTCERT", "volume config pooler.json .listen.postgres"
	From, To string
}

// rewriter maps a pod's view (mount paths, container ports) to the local process's view.
// The API objects are never changed; only the argv, environment and volume files handed to
// the process.
type rewriter struct {
	// mounts maps a container mount path to the directory (or file, for subPath mounts)
	// standing in for it; longest path first.
	mounts []mount
	// ports maps a container port to the loopback port this replica listens on instead.
	ports map[int32]int
}

type mount struct {
	containerPath, hostPath string
}

func newRewriter(mounts []mount, ports map[int32]int) *rewriter {
	m := slices.Clone(mounts)
	slices.SortFunc(m, func(a, b mount) int { return len(b.containerPath) - len(a.containerPath) })
	return &rewriter{mounts: m, ports: ports}
}

// value rewrites one string: a mount path (or a path below one) becomes the local path, and a
// wildcard listen address on a container port (":5432", "0.0.0.0:5432", "[::]:5432") becomes
// the replica's loopback port. Anything else is returned unchanged.
func (r *rewriter) value(s string) string {
	if addr, ok := r.listenAddr(s); ok {
		return addr
	}
	for _, m := range r.mounts {
		if s == m.containerPath {
			return m.hostPath
		}
		if strings.Contains(s, m.containerPath+"/") {
			return strings.ReplaceAll(s, m.containerPath+"/", strings.TrimSuffix(m.hostPath, "/")+"/")
		}
	}
	return s
}

func (r *rewriter) listenAddr(s string) (string, bool) {
	prefix := ""
	if i := strings.Index(s, "="); i >= 0 && strings.HasPrefix(s, "-") { // --listen=:5432
		prefix, s = s[:i+1], s[i+1:]
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", false
	}
	switch host {
	case "", "0.0.0.0", "::", "*":
	default:
		return "", false
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return "", false
	}
	local, ok := r.ports[int32(p)]
	if !ok {
		return "", false
	}
	return prefix + net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), true
}

// args rewrites a command line.
func (r *rewriter) args(args []string) ([]string, []rewrite) {
	out := make([]string, len(args))
	var changes []rewrite
	for i, a := range args {
		out[i] = r.value(a)
		if out[i] != a {
			changes = append(changes, rewrite{Where: fmt.Sprintf("args[%d]", i), From: a, To: out[i]})
		}
	}
	return out, changes
}

// file rewrites the content of a volume file. JSON documents have their string values
// rewritten (paths, listen addresses); the bytes of anything else (certificates, keys) are
// left as they are. A JSON file is re-encoded only when something in it changed.
func (r *rewriter) file(volume, key string, data []byte) ([]byte, []rewrite) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers exactly as written
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return data, nil
	}
	var changes []rewrite
	doc = r.walk(doc, "", func(path, from, to string) {
		changes = append(changes, rewrite{Where: fmt.Sprintf("volume %s %s %s", volume, key, path), From: from, To: to})
	})
	if len(changes) == 0 {
		return data, nil
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return data, nil
	}
	return append(out, '\n'), changes
}

func (r *rewriter) walk(v any, path string, changed func(path, from, to string)) any {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			t[k] = r.walk(child, path+"."+k, changed)
		}
		return t
	case []any:
		for i, child := range t {
			t[i] = r.walk(child, fmt.Sprintf("%s[%d]", path, i), changed)
		}
		return t
	case string:
		if to := r.value(t); to != t {
			changed(path, t, to)
			return to
		}
		return t
	default:
		return v
	}
}
