// Command idleclients measures what an idle client costs a connection pooler.
//
// It reads the pooler's resident set size (VmRSS in /proc/<pid>/status), opens -n client
// connections that each complete the startup and authentication exchange and then sit idle,
// waits for the pooler to settle, reads VmRSS again and prints one result line:
//
//	RESULT clients=10000 failed=0 rss_before_kb=7040 rss_after_kb=15360 per_client_bytes=851
//
// With -metrics (a Prometheus endpoint with the Go collector, such as edgepool's admin /metrics)
// it also reports the growth of the Go heap and goroutine stacks per client and goroutines per
// client, which tells where the resident memory goes.
//
// Then it closes every connection and exits. It is part of `make bench` (bench/run.sh); it
// needs a file-descriptor limit above -n (the Go runtime raises the soft limit to the hard one).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idleclients:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		host     = flag.String("host", "127.0.0.1", "pooler host")
		port     = flag.Int("port", 0, "pooler port")
		user     = flag.String("user", "", "user name (for edgepool: the API key name)")
		database = flag.String("db", "", "database name")
		clients  = flag.Int("n", 10000, "idle client connections to open")
		parallel = flag.Int("parallel", 32, "connection attempts in flight at once")
		pid      = flag.Int("pid", 0, "pid of the pooler process whose VmRSS is measured")
		settle   = flag.Duration("settle", 5*time.Second, "wait after the last connection before measuring")
		timeout  = flag.Duration("connect-timeout", 30*time.Second, "per-connection connect+auth timeout")
		metrics  = flag.String("metrics", "", "optional Prometheus URL of the pooler (Go collector metrics)")
		sslmode  = flag.String("sslmode", "disable", "libpq sslmode of the clients (require: idle TLS clients)")
	)
	flag.Parse()
	password := os.Getenv("PGPASSWORD") // not a flag: keep it out of ps output
	if *port == 0 || *user == "" || *database == "" || *pid == 0 {
		return errors.New("-port, -user, -db and -pid are required (password in PGPASSWORD)")
	}

	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=%s",
		*host, *port, *user, *database, *sslmode))
	if err != nil {
		return fmt.Errorf("connection config: %w", err)
	}
	cfg.Password = password
	cfg.ConnectTimeout = *timeout
	// No fallbacks: exactly one TCP connection per client.
	cfg.Fallbacks = nil

	// One client first, closed again: the pooler's one-time costs (code paths touched the first
	// time, the upstream connection it opens to learn the server's parameters) are not the
	// idle clients' (both poolers get the same warm-up).
	if err := warmUp(cfg, *timeout); err != nil {
		return err
	}
	time.Sleep(time.Second)
	before, err := vmRSSKiB(*pid)
	if err != nil {
		return err
	}
	var goBefore goMemory
	if *metrics != "" {
		if goBefore, err = scrapeGoMemory(*metrics); err != nil {
			return err
		}
	}

	conns := make([]*pgconn.PgConn, *clients)
	var (
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	started := time.Now()
	for range *parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *clients {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				c, err := pgconn.ConnectConfig(ctx, cfg)
				cancel()
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	connected := *clients - int(failed.Load())
	fmt.Fprintf(os.Stderr, "idleclients: %d/%d connected and authenticated in %s\n",
		connected, *clients, time.Since(started).Round(time.Millisecond))
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "idleclients: first failure: %v\n", firstErr)
	}

	time.Sleep(*settle)
	after, err := vmRSSKiB(*pid)
	if err != nil {
		return err
	}
	// A pooler that dropped idle clients while we slept would flatter itself: count them.
	alive := countAlive(conns)

	perClient := 0.0
	if alive > 0 {
		perClient = float64(after-before) * 1024 / float64(alive)
	}
	result := fmt.Sprintf("RESULT clients=%d failed=%d alive=%d rss_before_kb=%d rss_after_kb=%d per_client_bytes=%.0f",
		*clients, failed.Load(), alive, before, after, perClient)
	if *metrics != "" && alive > 0 {
		goAfter, err := scrapeGoMemory(*metrics)
		if err != nil {
			return err
		}
		n := float64(alive)
		result += fmt.Sprintf(" heap_inuse_per_client_bytes=%.0f stack_inuse_per_client_bytes=%.0f goroutines_per_client=%.2f",
			(goAfter.heapInuse-goBefore.heapInuse)/n, (goAfter.stackInuse-goBefore.stackInuse)/n,
			(goAfter.goroutines-goBefore.goroutines)/n)
	}
	fmt.Println(result)

	closeAll(conns)
	if failed.Load() > 0 || alive != connected {
		return fmt.Errorf("%d connections failed, %d of %d dropped while idle",
			failed.Load(), connected-alive, connected)
	}
	return nil
}

// countAlive reports how many connections the server has not closed. On a connection the
// server closed, a short read returns EOF (or a reset) at once; on an open idle one it times out.
func warmUp(cfg *pgconn.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("warm-up connection: %w", err)
	}
	if _, err := c.Exec(ctx, "select 1").ReadAll(); err != nil {
		return fmt.Errorf("warm-up query: %w", err)
	}
	return c.Close(ctx)
}

func countAlive(conns []*pgconn.PgConn) int {
	alive := 0
	var buf [1]byte
	for _, c := range conns {
		if c == nil || c.IsClosed() {
			continue
		}
		nc := c.Conn()
		if err := nc.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			continue
		}
		// Data (an asynchronous notice) or a timeout both mean the peer still holds it.
		_, err := nc.Read(buf[:])
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			alive++
		}
		_ = nc.SetReadDeadline(time.Time{})
	}
	return alive
}

func closeAll(conns []*pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range conns {
		if c != nil {
			_ = c.Close(ctx)
		}
	}
}

// vmRSSKiB reads the resident set size of a process in KiB.
func vmRSSKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS of pid %d: %w", pid, err)
		}
		return kb, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// goMemory is what the Prometheus Go collector says about a process's memory.
type goMemory struct{ heapInuse, stackInuse, goroutines float64 }

// scrapeGoMemory reads go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes and
// go_goroutines from a Prometheus text endpoint.
func scrapeGoMemory(url string) (goMemory, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return goMemory{}, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return goMemory{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return goMemory{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	var m goMemory
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_memstats_heap_inuse_bytes":
			dst = &m.heapInuse
		case "go_memstats_stack_inuse_bytes":
			dst = &m.stackInuse
		case "go_goroutines":
			dst = &m.goroutines
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
			return goMemory{}, fmt.Errorf("scrape %s: %s: %w", url, name, err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return goMemory{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	if found < 3 {
		return goMemory{}, fmt.Errorf("scrape %s: Go collector metrics missing", url)
	}
	return m, nil
}
