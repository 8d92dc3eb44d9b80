package localkubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// serviceProxy stands in for kube-proxy for one Service: a loopback listener per service port
// that forwards each TCP connection to a ready replica (round-robin) whose labels match the
// Service's selector.
type serviceProxy struct {
	k        *Kubelet
	key      types.NamespacedName
	selector labels.Selector
	ports    map[string]*portProxy // by port name, and by port number as a string
}

type portProxy struct {
	svc    *serviceProxy
	port   corev1.ServicePort
	ln     net.Listener
	next   atomic.Uint64
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// ServiceAddr is the local address ("127.0.0.1:port") standing in for a Service port, named
// by its name ("postgres") or number ("5432").
func (k *Kubelet) ServiceAddr(namespace, name, port string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	svc := k.services[types.NamespacedName{Namespace: namespace, Name: name}]
	if svc == nil {
		return "", false
	}
	pp := svc.ports[port]
	if pp == nil {
		return "", false
	}
	return pp.ln.Addr().String(), true
}

// WaitServiceAddr waits until the Service port is mapped and returns its local address.
func (k *Kubelet) WaitServiceAddr(ctx context.Context, namespace, name, port string) (string, error) {
	for {
		if addr, ok := k.ServiceAddr(namespace, name, port); ok {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("service %s/%s port %s not mapped: %w", namespace, name, port, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (k *Kubelet) syncServices(ctx context.Context) {
	var list corev1.ServiceList
	if err := k.cache.List(ctx, &list); err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	seen := map[types.NamespacedName]bool{}
	for i := range list.Items {
		s := &list.Items[i]
		if len(s.Spec.Selector) == 0 || (k.opts.Namespace != "" && s.Namespace != k.opts.Namespace) {
			continue
		}
		key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
		seen[key] = true
		sp := k.services[key]
		if sp == nil {
			sp = &serviceProxy{k: k, key: key, ports: map[string]*portProxy{}}
			k.services[key] = sp
		}
		sp.selector = labels.SelectorFromSet(s.Spec.Selector)
		wanted := map[*portProxy]bool{}
		for _, port := range s.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			num := strconv.Itoa(int(port.Port))
			pp := sp.ports[num]
			if pp == nil {
				ln, err := k.listenLoopback()
				if err != nil {
					k.log.Error("service listener", "service", key, "port", num, "err", err)
					continue
				}
				pp = &portProxy{svc: sp, ln: ln, conns: map[net.Conn]struct{}{}}
				go pp.serve()
				k.log.Info("service mapped", "service", key, "port", port.Name, "servicePort", port.Port,
					"local", ln.Addr().String())
			}
			pp.port = port
			sp.ports[num] = pp
			if port.Name != "" {
				sp.ports[port.Name] = pp
			}
			wanted[pp] = true
		}
		for name, pp := range sp.ports {
			if !wanted[pp] {
				pp.close()
				delete(sp.ports, name)
			}
		}
	}
	for key, sp := range k.services {
		if !seen[key] {
			sp.close()
			delete(k.services, key)
			k.log.Info("service unmapped", "service", key)
		}
	}
}

func (s *serviceProxy) close() {
	for _, pp := range s.ports {
		pp.close()
	}
}

func (pp *portProxy) close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.closed {
		return
	}
	pp.closed = true
	pp.ln.Close()
	for c := range pp.conns {
		c.Close()
	}
}

// endpoints lists the loopback addresses of the ready replicas behind a service port.
func (k *Kubelet) endpoints(pp *portProxy) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for key, pods := range k.pods {
		if key.Namespace != pp.svc.key.Namespace {
			continue
		}
		for _, p := range pods {
			if !p.isReady() || !pp.svc.selector.Matches(labels.Set(p.labels)) {
				continue
			}
			target, ok := p.containerPort(pp.port.TargetPort)
			if pp.port.TargetPort.IntVal == 0 && pp.port.TargetPort.StrVal == "" {
				target, ok = pp.port.Port, true
			}
			if !ok {
				continue
			}
			if local, ok := p.ports[target]; ok {
				out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(local)))
			}
		}
	}
	return out
}

func (pp *portProxy) serve() {
	for {
		c, err := pp.ln.Accept()
		if err != nil {
			return
		}
		go pp.forward(c)
	}
}

func (pp *portProxy) track(c net.Conn, add bool) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if add {
		if pp.closed {
			return false
		}
		pp.conns[c] = struct{}{}
	} else {
		delete(pp.conns, c)
	}
	return true
}

// forward relays one client connection to a replica; with no ready replica the connection is
// closed at once, as kube-proxy rejects connections to a Service without endpoints.
func (pp *portProxy) forward(client net.Conn) {
	defer client.Close()
	eps := pp.svc.k.endpoints(pp)
	if len(eps) == 0 {
		return
	}
	addr := eps[int(pp.next.Add(1)-1)%len(eps)]
	upstream, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer upstream.Close()
	if !pp.track(client, true) {
		return
	}
	defer pp.track(client, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	<-done
	<-done
}

// listenLoopback listens on a free loopback port below the ephemeral range that no replica
// has been promised.
func (k *Kubelet) listenLoopback() (net.Listener, error) {
	k.portsMu.Lock()
	defer k.portsMu.Unlock()
	var lastErr error
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if k.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		lastErr = err
	}
	return nil, errors.Join(errors.New("no free loopback port in 20000-31999"), lastErr)
}
