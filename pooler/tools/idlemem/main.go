// Command idlemem measures the pooler's resident memory per idle client: it starts a
// throwaway PostgreSQL, runs the pooler in a child process, opens N client connections that
// authenticate and then sit idle, and reports the child's RSS growth per client.
//
//	go run ./pooler/tools/idlemem -n 10000
//
// Needs 2N file descriptors (N per process) and PostgreSQL 15 binaries (see internal/testpg).
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"context"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

func main() {
	n := flag.Int("n", 10000, "idle clients to open")
	serve := flag.String("serve", "", "internal: run the pooler with this config file")
	settle := flag.Duration("settle", 5*time.Second, "wait before measuring")
	flag.Parse()
	raiseFileLimit()
	if *serve != "" {
		if os.Getenv("IDLEMEM_FORCE_GC") != "" {
			// Measurement aid: collect often so RSS shows live memory rather than GC slack.
			go func() {
				for range time.Tick(time.Second) {
					debug.FreeOSMemory()
				}
			}()
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := pooler.Run(context.Background(), pooler.RunOptions{ConfigPath: *serve, Log: log}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := measure(*n, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "idlemem:", err)
		os.Exit(1)
	}
}

func measure(n int, settle time.Duration) error {
	pg, err := testpg.New()
	if err != nil {
		return err
	}
	defer pg.Close()
	key, err := apikey.Generate()
	if err != nil {
		return err
	}
	salt, _ := apikey.NewSalt()
	v, _ := apikey.NewSCRAMVerifier(key, salt, apikey.DefaultIterations)
	port := freePort()
	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: fmt.Sprintf("127.0.0.1:%d", port), Admin: fmt.Sprintf("127.0.0.1:%d", port+1)}
	cfg.Database = "postgres"
	cfg.Upstream = config.Upstream{Host: pg.Host, Port: pg.Port, Database: "postgres", User: pg.User, Password: pg.Password, SSLMode: "disable"}
	cfg.Pool.Size = 2
	cfg.Pool.MaxClientConnections = n + 10
	// Cleartext on loopback keeps the client side cheap; the idle state is the same as after SCRAM.
	cfg.ClientAuthMethod = config.AuthPassword
	cfg.AllowCleartextWithoutTLS = true
	cfg.Keys = []config.Key{{Name: "mem", Verifiers: []config.Verifier{{SCRAM: v.String(), SHA256: apikey.Digest(key)}}}}
	dir, err := os.MkdirTemp("", "idlemem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pooler.json")
	data, _ := cfg.Marshal()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	self, _ := os.Executable()
	child := exec.CommandContext(context.Background(), self, "-serve", path)
	child.Stderr = os.Stderr
	child.Env = os.Environ()
	if g := os.Getenv("IDLEMEM_CHILD_GODEBUG"); g != "" {
		child.Env = append(child.Env, "GODEBUG="+g)
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { _ = child.Process.Signal(syscall.SIGTERM); _ = child.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// Warm up: one client runs a query so the pool, statement registry etc. exist.
	var conns []net.Conn
	var warm net.Conn
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if warm, err = connect(addr, key, true); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("warm-up client: %w", err)
	}
	conns = append(conns, warm)
	time.Sleep(settle)
	before := rssKB(child.Process.Pid)

	start := time.Now()
	for i := range n {
		c, err := connect(addr, key, i%2 == 0)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	connectTime := time.Since(start)
	time.Sleep(settle)
	after := rssKB(child.Process.Pid)
	if os.Getenv("IDLEMEM_HOLD") != "" {
		fmt.Println("holding connections; press ctrl-c")
		time.Sleep(time.Hour)
	}
	perClient := float64(after-before) * 1024 / float64(n)
	fmt.Printf("idle clients: %d (opened in %v)\nRSS before: %d KiB\nRSS after:  %d KiB\nper idle client: %.0f bytes (%.2f KiB)\n",
		n, connectTime.Round(time.Millisecond), before, after, perClient, perClient/1024)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port+1), nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			for _, m := range []string{"go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes",
				"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_goroutines", "go_memstats_sys_bytes"} {
				if strings.HasPrefix(line, m+" ") {
					fmt.Println("child", line)
				}
			}
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// connect authenticates with a cleartext password, optionally runs one query, and leaves the
// connection idle.
func connect(addr, key string, query bool) (net.Conn, error) {
	c, err := new(net.Dialer).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	body := []byte{0, 3, 0, 0}
	body = append(body, "user\x00mem\x00database\x00postgres\x00\x00"...)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	msg = append(msg, body...)
	msg = append(msg, frame('p', key+"\x00")...)
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	ready := 0
	want := 1
	if query {
		if _, err := c.Write(frame('Q', "select 1\x00")); err != nil {
			return nil, err
		}
		want = 2
	}
	for ready < want {
		typ, payload, err := readMsg(r)
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'E':
			return nil, fmt.Errorf("server error: %q", payload)
		case 'Z':
			ready++
		}
	}
	return c, nil
}

func frame(typ byte, body string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)+4))
	return append(b, body...)
}

func readMsg(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	_, err := io.ReadFull(r, b)
	return hdr[0], b, err
}

func rssKB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func freePort() int {
	for p := 20000; p < 32000; p += 7 {
		if l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", p+os.Getpid()%1000)); err == nil {
			l.Close()
			return p + os.Getpid()%1000
		}
	}
	return 0
}

func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	_ = runtime.GOMAXPROCS(0)
}
