package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// poolerProcess is a real `edgepool pooler` process: this test binary re-run as main.
type poolerProcess struct {
	*testutil.Process
	cfg *config.Config
}

// processConfig is the config of a pooler process in front of pg's database "postgres" on free
// loopback ports, with one key "app"; it returns the key too.
func processConfig(t *testing.T, pg *testpg.Server) (*config.Config, string) {
	t.Helper()
	entry, key, err := apikey.NewConfigKey("app")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: freeAddr(t), Admin: freeAddr(t)}
	cfg.Database = "postgres"
	cfg.Upstream = config.Upstream{Host: pg.Host, Port: pg.Port, Database: "postgres", User: pg.User,
		Password: pg.Password, SSLMode: "disable"}
	cfg.Keys = []config.Key{entry}
	return &cfg, key
}

// startPoolerProcess writes cfg and starts a pooler process on it, waiting until /readyz (the
// config must listen on an admin address). wrap, when given, is a command line the pooler
// command is appended to (e.g. a shell that lowers ulimits first). testutil.StartProcess ends
// it with the test.
func startPoolerProcess(t *testing.T, cfg *config.Config, wrap ...string) *poolerProcess {
	t.Helper()
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), config.FileName)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), wrap...), os.Args[0], "pooler", "--config", cfgPath)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "EDGEPOOL_TEST_RUN_MAIN=1")
	p := &poolerProcess{Process: testutil.StartProcess(t, cmd), cfg: cfg}
	testutil.Eventually(t, "pooler ready", 15*time.Second, p.ready)
	return p
}

// ready reports whether /readyz answers 200.
func (p *poolerProcess) ready() bool {
	resp, err := http.Get("http://" + p.cfg.Listen.Admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
