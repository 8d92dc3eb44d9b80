package pooler

import (
	"fmt"

	"github.com/edgepool/edgepool/pooler/accelerate"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
)

// mountAccelerate makes the Prisma Accelerate server for the HTTP listener when it is enabled:
// the same pool, keys (those in force at each request) and in-flight budget as the edge
// transports; setHTTPHandler mounts it and gives it the query cache in force. It returns nil
// when disabled.
func (s *Server) mountAccelerate(cfg *config.Config, limiter *edge.Limiter) (*accelerate.Server, error) {
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
	return accelerate.NewServer(opts), nil
}
