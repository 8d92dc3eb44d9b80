package pooler

import (
	"syscall"

	"github.com/edgepool/edgepool/pooler/config"
)

// fdReserve is the file descriptors kept out of the client budget besides the upstream
// connections: listeners, the admin server and its scrapes, the epoll reactor, the config
// watcher, cancel requests to the upstream, logs, and room to accept a connection in order
// to refuse or evict.
const fdReserve = 64

// clientLimits are the client caps in force: the configured ones, lowered so that clients,
// upstream connections and the reserve fit in nofile descriptors (0: unknown, no lowering).
type clientLimits struct {
	maxClients, maxAuthenticating int
	lowered                       bool // maxClients is below the configured value
}

func limitsFor(cfg *config.Config, nofile uint64) clientLimits {
	l := clientLimits{maxClients: cfg.Pool.MaxClientConnections}
	if nofile > 0 {
		budget := int(min(nofile, 1<<30)) - cfg.Pool.Size - fdReserve
		if budget < 1 {
			budget = 1
		}
		if budget < l.maxClients {
			l.maxClients, l.lowered = budget, true
		}
	}
	l.maxAuthenticating = cfg.Pool.MaxAuthenticatingConnections
	if l.maxAuthenticating == 0 {
		l.maxAuthenticating = max(16, l.maxClients/8)
	}
	l.maxAuthenticating = min(l.maxAuthenticating, l.maxClients)
	return l
}

// fileLimit is the process's RLIMIT_NOFILE (Go raises the soft limit to the hard one at
// start), or 0 if unknown.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}
