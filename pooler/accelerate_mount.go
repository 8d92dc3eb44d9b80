package pooler

import (
	"fmt"
	"net/http"

	"github.com/edgepool/edgepool/pooler/accelerate"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
)

// mountAccelerate serves the Prisma Accelerate protocol on the HTTP listener's mux when it is
// enabled: the same pool, keys (those in force at each request) and query cache as the edge
// transports. It returns nil when disabled.
func (s *Server) mountAccelerate(mux *http.ServeMux, cfg *config.Config, cache *edge.Cache, limiter *edge.Limiter) (*accelerate.Server, error) {
	if !cfg.HTTP.Accelerate.Enabled {
		return nil, nil
	}
	metrics := accelerate.NewMetrics()
	if err := metrics.Register(s.metrics.registry); err != nil {
		return nil, fmt.Errorf("register accelerate metrics: %w", err)
	}
	opts := accelerate.Options{
		Upstream:              edge.PoolUpstream(s.pool),
		Keys:                  edge.KeyringFunc(s.Keyring),
		MaxRequestBytes:       cfg.HTTP.Accelerate.MaxRequestBytes,
		MaxResponseBytes:      cfg.HTTP.MaxResponseBytes,
		QueryTimeout:          cfg.HTTP.StatementTimeout.Duration,
		MaxTransactionTimeout: cfg.HTTP.Accelerate.MaxTransactionTimeout.Duration,
		MaxBindValues:         cfg.HTTP.Accelerate.MaxBindValues,
		Limiter:               limiter,
		BodyTimeout:           cfg.HTTP.BodyReadTimeout.Duration,
		Guard:                 s.guard,
		CleartextAllowed:      func() bool { return s.Config().AllowCleartextWithoutTLS },
		Metrics:               metrics,
		Logger:                s.log,
	}
	if cache != nil { // a nil *edge.Cache must not become a non-nil interface
		opts.Cache = cache
	}
	a := accelerate.NewServer(opts)
	a.Register(mux)
	return a, nil
}
