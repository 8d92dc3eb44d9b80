// Command harness runs what the node tests of the edge transports talk to: a throwaway
// PostgreSQL 15 (internal/pgserver) and the real pooler binary (`edgepool pooler --config`), with
// a key made by `edgepool keygen`, serving the wire protocol, the HTTP listener (POST /sql,
// WebSocket, the Prisma Accelerate protocol) and the admin endpoints on loopback ports. With
// -tls the pooler serves TLS with a certificate for "localhost" from a throwaway CA, whose PEM
// file the printed line names (for NODE_EXTRA_CA_CERTS).
//
// It prints one JSON line describing the endpoints and the key, then runs until stdin closes
// or it gets SIGINT/SIGTERM, and stops the pooler (SIGTERM, a drain) and Postgres. The key is
// throwaway, which is why printing it is fine here and nowhere else.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgepool/edgepool/internal/certs"
	"github.com/edgepool/edgepool/internal/pgserver"
	"github.com/edgepool/edgepool/pooler/config"
)

// endpoints is the line the harness prints.
type endpoints struct {
	HTTP     string `json:"http"`     // host:port of POST /sql and the WebSocket transport
	Postgres string `json:"postgres"` // host:port of the wire-protocol listener
	Admin    string `json:"admin"`    // host:port of /metrics, /readyz, /debug/pools
	User     string `json:"user"`     // API key name
	Key      string `json:"key"`      // API key
	Database string `json:"database"` // database clients ask for
	PoolSize int    `json:"poolSize"`
	CA       string `json:"ca,omitempty"` // with -tls: PEM file of the CA that signed the pooler's certificate
	// Upstream is the throwaway PostgreSQL's superuser URL (loopback, no TLS), for test setup
	// and for pointing a reference server at the same database.
	Upstream string `json:"upstream"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run() error {
	self, _ := os.Executable()
	binary := flag.String("edgepool", filepath.Join(filepath.Dir(self), "edgepool"), "the edgepool binary")
	poolSize := flag.Int("pool-size", 5, "upstream connections")
	queryWait := flag.Duration("query-wait", 10*time.Second, "query-wait timeout")
	withTLS := flag.Bool("tls", false, "serve TLS on the Postgres and HTTP listeners (certificate for localhost from a throwaway CA)")
	flag.Parse()

	pg, err := pgserver.New(pgserver.WithSetting("max_connections", "50"))
	if err != nil {
		return err
	}
	defer pg.Close()

	key, entry, err := keygen(*binary, "app")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "edgepool-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: "127.0.0.1:0", HTTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Database = "postgres"
	cfg.Upstream = config.Upstream{Host: pg.Host, Port: pg.Port, Database: "postgres", User: pg.User,
		Password: pg.Password, SSLMode: "disable"}
	cfg.Pool.Size = *poolSize
	cfg.Pool.QueryWaitTimeout = config.Duration{Duration: *queryWait}
	cfg.Pool.ShutdownTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Keys = []config.Key{entry}
	cfg.HTTP.Enabled = true
	// Loopback without TLS: the Neon driver sends the key in cleartext over ws:// and in the
	// HTTP headers, which the pooler refuses unless told that this is fine.
	cfg.AllowCleartextWithoutTLS = true
	cfg.HTTP.MaxResponseBytes = 4 << 20
	cfg.HTTP.Cache = config.Cache{Enabled: true, MaxBytes: 16 << 20}
	var caFile string
	if *withTLS {
		if caFile, cfg.TLS, err = writeCertificates(dir); err != nil {
			return err
		}
	}
	data, err := cfg.Marshal()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return err
	}

	pooler := exec.Command(*binary, "pooler", "--config", cfgPath)
	logs, err := pooler.StderrPipe()
	if err != nil {
		return err
	}
	if err := pooler.Start(); err != nil {
		return fmt.Errorf("start pooler: %w", err)
	}
	exited := make(chan error, 1)
	addrs := make(chan endpoints, 1)
	go func() { addrs <- watchLogs(logs) }()
	go func() { exited <- pooler.Wait() }()
	defer func() {
		_ = pooler.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			_ = pooler.Process.Kill()
			err = <-exited
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "harness: pooler exit:", err)
		}
	}()

	var ep endpoints
	select {
	case ep = <-addrs:
		if ep.HTTP == "" {
			return errors.New("pooler stopped logging before it reported its listeners")
		}
	case err := <-exited:
		return fmt.Errorf("pooler exited before listening: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("pooler did not report its listeners within 30s")
	}
	if err := waitReady("http://" + ep.Admin + "/readyz"); err != nil { // the admin listener is never TLS
		return err
	}
	ep.User, ep.Key, ep.Database, ep.PoolSize = "app", key, "postgres", *poolSize
	ep.CA, ep.Upstream = caFile, pg.DSN("postgres")
	line, err := json.Marshal(ep)
	if err != nil {
		return err
	}
	fmt.Println(string(line))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		exited <- err // for the deferred stop
		return fmt.Errorf("pooler exited: %w", err)
	}
}

// writeCertificates writes a throwaway CA and a server certificate for localhost into dir and
// returns the CA's file and the pooler's TLS settings.
func writeCertificates(dir string) (string, *config.TLS, error) {
	now := time.Now()
	caCert, caKey, err := certs.NewCA("node-harness", now)
	if err != nil {
		return "", nil, err
	}
	cert, key, err := certs.NewServerCert(caCert, caKey, []string{"localhost"}, now)
	if err != nil {
		return "", nil, err
	}
	tlsCfg := &config.TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	caFile := filepath.Join(dir, "ca.crt")
	for path, data := range map[string][]byte{caFile: caCert, tlsCfg.CertFile: cert, tlsCfg.KeyFile: key} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return "", nil, err
		}
	}
	return caFile, tlsCfg, nil
}

// keygen runs `edgepool keygen` and reads the key and its config entry from its output.
func keygen(binary, name string) (string, config.Key, error) {
	out, err := exec.Command(binary, "keygen", "-name", name).Output()
	if err != nil {
		return "", config.Key{}, fmt.Errorf("edgepool keygen: %w", err)
	}
	var key string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "ep_") {
			key = strings.TrimSpace(l)
			break
		}
	}
	var entry config.Key
	start := bytes.IndexByte(out, '{')
	if key == "" || start < 0 {
		return "", config.Key{}, errors.New("edgepool keygen: unexpected output")
	}
	if err := json.NewDecoder(bytes.NewReader(out[start:])).Decode(&entry); err != nil {
		return "", config.Key{}, fmt.Errorf("edgepool keygen: config entry: %w", err)
	}
	return key, entry, nil
}

// watchLogs forwards the pooler's warnings and errors to stderr and returns the listener addresses once
// both the HTTP listener and the started line have been logged; it keeps forwarding after.
func watchLogs(r io.Reader) endpoints {
	var ep endpoints
	sent := false
	result := make(chan endpoints, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var rec struct {
				Level    string `json:"level"`
				Msg      string `json:"msg"`
				Addr     string `json:"addr"`
				Postgres string `json:"postgres"`
				Admin    string `json:"admin"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || (rec.Level != "INFO" && rec.Level != "DEBUG") {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
			switch rec.Msg {
			case "http sql and websocket listening":
				ep.HTTP = rec.Addr
			case "pooler started":
				ep.Postgres, ep.Admin = rec.Postgres, rec.Admin
			}
			if !sent && ep.HTTP != "" && ep.Admin != "" {
				sent = true
				result <- ep
			}
		}
		if !sent {
			result <- endpoints{}
		}
	}()
	return <-result
}

func waitReady(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pooler not ready after 30s (%s)", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
