package pooler_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/config"
)

// poolerProcessEnv makes the test binary run as a pooler process with the config file it names:
// tests that measure the pooler's own memory need it in a process of its own.
const poolerProcessEnv = "EDGEPOOL_TEST_POOLER_CONFIG"

// runPoolerProcess serves until SIGTERM; once listening it writes its addresses ("postgres
// admin") to the file named by cfgPath + ".addr".
func runPoolerProcess(cfgPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	started := func(s *pooler.Server) {
		addrs := s.PostgresAddr().String() + " " + s.AdminAddr().String()
		_ = os.WriteFile(cfgPath+".addr.tmp", []byte(addrs), 0o600)
		_ = os.Rename(cfgPath+".addr.tmp", cfgPath+".addr")
	}
	return pooler.Run(ctx, pooler.RunOptions{ConfigPath: cfgPath, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Started: started})
}

// poolerProcess is a pooler running in a child process.
type poolerProcess struct {
	*testutil.Process
	cfg         *config.Config
	key         testKey
	addr, admin string
}

// startPoolerProcess runs a pooler with baseConfig (changed by mutate) in a child process and
// waits until it is ready.
func startPoolerProcess(t *testing.T, mutate func(*config.Config)) *poolerProcess {
	t.Helper()
	cfg := baseConfig(t)
	if mutate != nil {
		mutate(cfg)
	}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), config.FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), poolerProcessEnv+"="+path)
	p := &poolerProcess{Process: testutil.StartProcess(t, cmd), cfg: cfg, key: newTestKey(t, "app")}
	testutil.Eventually(t, "pooler process listening", 20*time.Second, func() bool {
		b, err := os.ReadFile(path + ".addr")
		if err != nil {
			return false
		}
		p.addr, p.admin, _ = strings.Cut(string(b), " ")
		return true
	})
	testutil.Eventually(t, "pooler process ready", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *poolerProcess) dsn() string {
	return fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", p.key.name, p.key.secret, p.addr)
}

// memory reads the process's resident set and its peak (VmRSS, VmHWM) in bytes.
func (p *poolerProcess) memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// resetPeak makes VmHWM start again from the current RSS (clear_refs 5).
func (p *poolerProcess) resetPeak(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}
