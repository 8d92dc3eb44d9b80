package pooler

import (
	"testing"

	"github.com/edgepool/edgepool/pooler/config"
)

func TestLimitsFor(t *testing.T) {
	for _, tt := range []struct {
		name                string
		maxClients, preAuth int
		poolSize            int
		nofile              uint64
		want                clientLimits
	}{
		{"plenty of descriptors", 10000, 0, 10, 1 << 20, clientLimits{10000, 1250, false}},
		{"container default 1024", 10000, 0, 10, 1024, clientLimits{950, 118, true}},
		{"unknown limit", 10000, 0, 10, 0, clientLimits{10000, 1250, false}},
		{"explicit pre-auth cap", 10000, 100, 10, 1 << 20, clientLimits{10000, 100, false}},
		{"pre-auth cap above the client cap", 50, 100, 10, 1 << 20, clientLimits{50, 50, false}},
		{"small pools keep 16 logins", 40, 0, 10, 1 << 20, clientLimits{40, 16, false}},
		{"absurdly low limit", 10000, 0, 10, 50, clientLimits{1, 1, true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Pool.MaxClientConnections, cfg.Pool.MaxAuthenticatingConnections, cfg.Pool.Size = tt.maxClients, tt.preAuth, tt.poolSize
			if got := limitsFor(&cfg, tt.nofile); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
