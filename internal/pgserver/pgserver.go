// Package pgserver starts a throwaway PostgreSQL 15 server: for the tests (through
// internal/testpg), the local demo and the node harness. It does not import "testing", so the
// programs that use it do not link the test framework.
//
// The server listens on 127.0.0.1 (a free port below 32768) and on a unix socket, uses
// scram-sha-256 authentication with a superuser password, and keeps its data in a temp
// directory that is removed when the server is closed. WithTLS makes it serve TCP over TLS
// only, with a certificate from a CA generated for the server (Server.CACert), so tests can
// connect with sslmode require, verify-ca and verify-full. initdb and postgres refuse to run as
// root, so when the test runs as root they run as the "postgres" system user.
//
//	pg, err := pgserver.New(pgserver.WithSetting("max_connections", "50"))
//	if err != nil { ... }
//	defer pg.Close()
//	err = pg.ExecErr("create table t (id int)")
//	conn, _ := pgx.Connect(ctx, pg.DSN("postgres"))
//
// Tests use internal/testpg, which adds Start (closed with the test) and Exec (fails the test).
package pgserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/certs"
)

// Server is one running (or stopped) PostgreSQL instance.
type Server struct {
	// Host is the TCP address the server listens on (127.0.0.1).
	Host string
	// Port is the TCP port, also used for the socket file name in SocketDir.
	Port int
	// SocketDir holds the unix socket.
	SocketDir string
	// User and Password are the superuser's credentials.
	User     string
	Password string
	// CACert is the PEM certificate of the CA that signed the server certificate, and CAFile a
	// file holding it (for libpq's sslrootcert); both empty unless started WithTLS.
	CACert []byte
	CAFile string

	opts    options
	root    string // temp dir holding data, socket and log
	dataDir string
	logPath string
	cred    *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

type options struct {
	settings map[string]string
	binDir   string
	tlsHosts []string // non-nil: serve TLS with a certificate for these names
}

// Option changes how the server is started.
type Option func(*options)

// WithSetting adds a postgresql.conf setting (passed as -c name=value).
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings[name] = value }
}

// WithTLS makes the server accept TCP connections over TLS only (plain TCP is rejected by
// pg_hba), with a server certificate for hosts — "localhost" and "127.0.0.1" when none are
// given — signed by a CA generated for this server. A test that wants a host name mismatch
// passes names that do not include 127.0.0.1.
func WithTLS(hosts ...string) Option {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	return func(o *options) { o.tlsHosts = hosts }
}

// WithBinDir overrides where initdb and postgres are found.
func WithBinDir(dir string) Option { return func(o *options) { o.binDir = dir } }

// New initialises and starts a server; the caller must Close it.
func New(opts ...Option) (*Server, error) {
	o := options{settings: map[string]string{}, binDir: os.Getenv("TESTPG_BINDIR")}
	for _, opt := range opts {
		opt(&o)
	}
	if o.binDir == "" {
		o.binDir = findBinDir()
	}
	if _, err := os.Stat(filepath.Join(o.binDir, "initdb")); err != nil {
		return nil, fmt.Errorf("initdb not found in %s (set TESTPG_BINDIR): %w", o.binDir, err)
	}
	raiseFileLimit()

	s := &Server{Host: "127.0.0.1", User: "postgres", opts: o}
	s.Password = randomHex(16)
	var err error
	if s.root, err = os.MkdirTemp("", "testpg-"); err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	s.dataDir = filepath.Join(s.root, "data")
	s.SocketDir = filepath.Join(s.root, "sock")
	s.logPath = filepath.Join(s.root, "postgres.log")
	if err := s.prepareDirs(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.initdb(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.writeTLSFiles(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startOnFreePort(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is host:port of the TCP listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// TLS reports whether the server was started WithTLS.
func (s *Server) TLS() bool { return s.opts.tlsHosts != nil }

// DSN is a connection URL for database db as the superuser over TCP: without TLS, or with
// sslmode=verify-full against CAFile when the server was started WithTLS.
func (s *Server) DSN(db string) string {
	if s.TLS() {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=verify-full&sslrootcert=%s",
			s.User, s.Password, s.Addr(), db, url.QueryEscape(s.CAFile))
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", s.User, s.Password, s.Addr(), db)
}

// socketDSN reaches the server over its unix socket, which works whatever the TLS setup.
func (s *Server) socketDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		s.SocketDir, s.Port, s.User, s.Password, db)
}

// ExecErr runs sql in database "postgres" and returns any error.
func (s *Server) ExecErr(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.socketDSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

// Stop shuts the server down (fast shutdown: open sessions are terminated). Data is kept, so
// Restart brings it back on the same port. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	cmd, done := s.takeCmd()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill ends the server the hard way (SIGKILL to the postmaster, as kill -9 does) and waits for
// it to exit; its backends notice and exit on their own. Restart brings it back (crash
// recovery replays the WAL: committed transactions survive).
func (s *Server) Kill() {
	cmd, done := s.takeCmd()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// takeCmd hands the running postmaster over to the caller, which stops it.
func (s *Server) takeCmd() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	return cmd, done
}

// Restart stops the server if it runs and starts it again on the same port.
func (s *Server) Restart() error {
	s.Stop()
	var err error
	for range 50 { // the old socket may linger for a moment
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.Stop()
	if s.root != "" {
		_ = os.RemoveAll(s.root)
	}
}

// Log returns the server log so far (useful when a test fails).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *Server) prepareDirs() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres system user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	for _, d := range []string{s.SocketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.logPath, nil, 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		for _, p := range []string{s.root, s.SocketDir, s.logPath} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
		}
	}
	return nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.opts.binDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.Dir = s.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (s *Server) initdb() error {
	pwFile := filepath.Join(s.root, "pwfile")
	if err := os.WriteFile(pwFile, []byte(s.Password+"\n"), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		_ = os.Chown(pwFile, int(s.cred.Uid), int(s.cred.Gid))
	}
	defer os.Remove(pwFile)
	cmd := s.command("initdb", "-D", s.dataDir, "-U", s.User, "--pwfile", pwFile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	hba := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if s.TLS() {
		hba = "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n" +
			"hostnossl all all 127.0.0.1/32 reject\n"
	}
	return os.WriteFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hba), 0o600)
}

// writeTLSFiles issues the CA and server certificate (when started WithTLS) and writes them
// where postgres (which insists the key is private to its user) and libpq clients read them.
func (s *Server) writeTLSFiles() error {
	if !s.TLS() {
		return nil
	}
	now := time.Now()
	bundle, _, _, err := certs.Ensure(certs.Bundle{}, "testpg", s.opts.tlsHosts, now)
	if err != nil {
		return fmt.Errorf("issue test certificates: %w", err)
	}
	s.CACert = bundle.CACert
	s.CAFile = filepath.Join(s.root, "ca.crt")
	files := map[string][]byte{
		s.CAFile:                            bundle.CACert,
		filepath.Join(s.root, "server.crt"): bundle.ServerCert,
		filepath.Join(s.root, "server.key"): bundle.ServerKey,
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
		if s.cred != nil {
			if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", path, err)
			}
		}
	}
	return nil
}

func (s *Server) startOnFreePort() error {
	var lastErr error
	for range 20 {
		s.Port = pickPort()
		if lastErr = s.start(); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

func (s *Server) start() error {
	args := []string{"-D", s.dataDir, "-p", strconv.Itoa(s.Port), "-k", s.SocketDir,
		"-c", "listen_addresses=" + s.Host}
	settings := map[string]string{
		"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
		"max_connections": "250", "shared_buffers": "32MB", "password_encryption": "scram-sha-256",
		"log_min_messages": "warning", "logging_collector": "off",
	}
	if s.TLS() {
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = filepath.Join(s.root, "server.crt")
		settings["ssl_key_file"] = filepath.Join(s.root, "server.key")
	}
	for k, v := range s.opts.settings {
		settings[k] = v
	}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	cmd := s.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	logFile.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("postgres exited during startup on port %d; log:\n%s", s.Port, tail(s.Log(), 2000))
		default:
		}
		if err := s.ping(); err == nil {
			break
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("postgres not ready after 30s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.socketDSN("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func findBinDir() string {
	for _, d := range []string{"/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin"} {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if out, err := exec.Command("dpkg", "-L", "postgresql-15").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(line, "/bin/initdb") {
				return filepath.Dir(line)
			}
		}
	}
	return "/usr/lib/postgresql/15/bin"
}

// pickPort returns a port in [16000, 32000) that is free right now. Ports at 32768 and above
// are the kernel's ephemeral range and may be taken by outgoing connections at any time.
func pickPort() int {
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(16000))
		port := 16000 + int(n.Int64())
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
}

var raiseOnce sync.Once

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit; the children inherit it.
func raiseFileLimit() {
	raiseOnce.Do(func() {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
			lim.Cur = lim.Max
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
