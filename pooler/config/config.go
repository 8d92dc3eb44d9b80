// Package config owns the pooler's configuration file schema. The operator renders it into the
// <pool>-pooler-config Secret; the pooler reads it (and reloads it live) from the mounted file.
// The same file runs the pooler without Kubernetes. See docs/pooler-config.md.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/edgepool/edgepool/pooler/upstream"
)

// FileName is the key of the config inside the config Secret and the file name in its mount.
const FileName = "pooler.json"

// Pool modes.
const (
	ModeTransaction = "transaction"
	ModeSession     = "session"
)

// Config is the whole pooler configuration.
type Config struct {
	// Listen holds the addresses the pooler serves on.
	Listen Listen `json:"listen"`
	// TLS, when set, enables TLS for the Postgres listener (SSLRequest) and the HTTP listener.
	TLS *TLS `json:"tls,omitempty"`
	// Database is the database name clients must ask for; it maps to Upstream.Database.
	Database string `json:"database"`
	// Upstream is the PostgreSQL server the pool connects to.
	Upstream Upstream `json:"upstream"`
	// Pool holds pool sizes, limits and timeouts.
	Pool Pool `json:"pool"`
	// Keys are the API keys clients authenticate with (user name = key name, password = key).
	Keys []Key `json:"keys"`
	// Paused makes the pooler hold new transactions until it is unpaused; in-flight ones finish.
	Paused bool `json:"paused,omitempty"`
	// AllowCleartextWithoutTLS lets clients send the key as a cleartext password on a connection
	// that is not TLS. Only for loopback/development; WebSocket clients are covered by the
	// outer TLS and do not need it.
	AllowCleartextWithoutTLS bool `json:"allowCleartextWithoutTLS,omitempty"`
	// HTTP configures the HTTP SQL endpoint and the WebSocket transport.
	HTTP HTTP `json:"http"`
	// Auth holds the defences of client authentication (docs/security.md).
	Auth Auth `json:"auth"`
	// ClientAuthMethod is how wire-protocol clients prove their key: "scram-sha-256" (default)
	// or "password" (the key in cleartext; used only on TLS connections, on transports that are
	// secured outside the protocol such as WebSocket over TLS, or with
	// AllowCleartextWithoutTLS; elsewhere the pooler falls back to SCRAM).
	ClientAuthMethod string `json:"clientAuthMethod,omitempty"`
}

// Auth holds the defences of client authentication.
type Auth struct {
	// DecoySecret seeds the SCRAM salts the pooler answers for key names that do not exist.
	// Every replica of a pool must have the same one (the operator keeps one in the config
	// Secret), so an unknown name gets the same salt from every replica, as a real name does.
	// Empty: a random secret per process (fine for a single standalone pooler).
	DecoySecret string `json:"decoySecret,omitempty"`
	// MaxFailuresPerSource is the burst of failed logins one client address may make; after
	// it the address earns one attempt per FailureWindow/MaxFailuresPerSource and is refused
	// before any key check meanwhile. 0 disables the budget.
	MaxFailuresPerSource int `json:"maxFailuresPerSource"`
	// FailureWindow is how long an exhausted budget takes to refill completely.
	FailureWindow Duration `json:"failureWindow"`
}

// Client authentication methods.
const (
	AuthSCRAM    = "scram-sha-256"
	AuthPassword = "password"
)

// Listen holds listener addresses ("host:port"; empty disables the listener).
type Listen struct {
	Postgres string `json:"postgres"`
	HTTP     string `json:"http,omitempty"`
	Admin    string `json:"admin,omitempty"`
}

// TLS names the certificate files of the pooler's server certificate.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Upstream is the PostgreSQL server behind the pool.
type Upstream struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	User     string `json:"user"`
	Password string `json:"password"`
	// SSLMode is a libpq sslmode: disable, prefer, require (default), verify-ca or verify-full.
	SSLMode string `json:"sslMode"`
	// CAFile is the CA bundle used for verify-ca / verify-full (and by require, which then
	// checks the chain as verify-ca does).
	CAFile string `json:"caFile,omitempty"`
	// RequireAuth is libpq's require_auth: the authentication methods the upstream may ask
	// for. Empty means scram-sha-256; "any" accepts every method.
	RequireAuth string `json:"requireAuth,omitempty"`
}

// Pool holds the pooling policy of one replica.
type Pool struct {
	// Mode is "transaction" (default) or "session".
	Mode string `json:"mode"`
	// Size is this replica's number of upstream connections.
	Size int `json:"size"`
	// MaxClientConnections caps wire-protocol client connections (TCP and WebSocket), logged
	// in or logging in, and concurrent HTTP requests. It is lowered to fit the process's file
	// descriptor limit.
	MaxClientConnections int `json:"maxClientConnections"`
	// MaxAuthenticatingConnections caps connections that have not finished logging in; a new
	// one then replaces a login that stalled or one that has sent nothing, or waits for a place
	// (session/admission.go). 0: maxClientConnections/8, at least 16.
	MaxAuthenticatingConnections int `json:"maxAuthenticatingConnections,omitempty"`
	// QueryWaitTimeout bounds how long a client waits for an upstream connection.
	QueryWaitTimeout Duration `json:"queryWaitTimeout"`
	// IdleTransactionTimeout closes a client that sits idle inside a transaction.
	IdleTransactionTimeout Duration `json:"idleTransactionTimeout"`
	// ServerLifetime retires upstream connections older than this.
	ServerLifetime Duration `json:"serverLifetime"`
	// ServerIdleTimeout closes upstream connections idle for longer than this.
	ServerIdleTimeout Duration `json:"serverIdleTimeout"`
	// ConnectTimeout bounds an upstream connection attempt.
	ConnectTimeout Duration `json:"connectTimeout"`
	// HealthCheckPeriod is how often idle upstream connections are checked.
	HealthCheckPeriod Duration `json:"healthCheckPeriod"`
	// AuthTimeout bounds a client's startup and authentication.
	AuthTimeout Duration `json:"authTimeout"`
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout Duration `json:"shutdownTimeout"`
	// MaxMessageBytes caps one client protocol message.
	MaxMessageBytes int `json:"maxMessageBytes"`
	// PreparedStatementsPerConn caps the protocol-level prepared statements the pooler keeps on
	// one upstream connection (least recently used ones are closed beyond it).
	PreparedStatementsPerConn int `json:"preparedStatementsPerConn,omitempty"`
	// PreparedStatementBytes is the byte budget of the pooler-wide registry of distinct
	// prepared statement texts (least recently prepared ones are forgotten beyond it).
	PreparedStatementBytes int64 `json:"preparedStatementBytes,omitempty"`
	// ClientStallTimeout disconnects a client holding an upstream connection that leaves a
	// request unfinished (extended-protocol messages without Sync, a message or COPY data
	// stopped half way) or does not read the results, for this long; 0 disables.
	ClientStallTimeout Duration `json:"clientStallTimeout"`
	// RelayLoop runs busy plain-TCP clients in transaction mode on one event loop (one thread
	// for all of them, as PgBouncer does) instead of a goroutine each; anything else they do
	// (logins, TLS, COPY, large messages, waits) stays on goroutines.
	RelayLoop bool `json:"relayLoop"`
}

// HTTP configures the HTTP listener's SQL endpoint and WebSocket transport.
type HTTP struct {
	Enabled bool `json:"enabled"`
	// MaxRequestBytes caps a request body.
	MaxRequestBytes int `json:"maxRequestBytes,omitempty"`
	// MaxResponseBytes caps a response (507 beyond).
	MaxResponseBytes int `json:"maxResponseBytes,omitempty"`
	// StatementTimeout bounds one HTTP request's queries.
	StatementTimeout Duration `json:"statementTimeout,omitempty"`
	// ReadHeaderTimeout bounds reading a request's headers (the connection is closed beyond).
	ReadHeaderTimeout Duration `json:"readHeaderTimeout,omitempty"`
	// BodyReadTimeout bounds reading a request body (408 beyond), so a client that trickles its
	// body cannot hold a request slot.
	BodyReadTimeout Duration `json:"bodyReadTimeout,omitempty"`
	// MaxInFlightPerKey caps the concurrent requests of one API key name (429 beyond), so one
	// key cannot take the slots of the others; pool.maxClientConnections caps all of them.
	MaxInFlightPerKey int `json:"maxInFlightPerKey,omitempty"`
	// Cache is the opt-in query result cache.
	Cache Cache `json:"cache"`
	// Accelerate is the Prisma Accelerate protocol endpoint (docs/accelerate.md).
	Accelerate Accelerate `json:"accelerate"`
}

// Accelerate configures the Prisma Accelerate protocol endpoint on the HTTP listener.
type Accelerate struct {
	// Enabled serves the endpoint's routes (default true).
	Enabled bool `json:"enabled"`
	// MaxTransactionTimeout caps the timeout an interactive transaction may ask for.
	MaxTransactionTimeout Duration `json:"maxTransactionTimeout,omitempty"`
	// MaxBindValues, when set, is advertised to clients and bounds the bind parameters of one
	// statement; unset, statements are split at Prisma's PostgreSQL default of 32766.
	MaxBindValues int `json:"maxBindValues,omitempty"`
	// MaxRequestBytes caps a request body. Query plans are larger than SQL (a createMany of
	// 30,000 rows posts several MiB), so this cap is apart from http.maxRequestBytes.
	MaxRequestBytes int `json:"maxRequestBytes,omitempty"`
}

// Cache configures the HTTP query result cache.
type Cache struct {
	Enabled    bool     `json:"enabled"`
	DefaultTTL Duration `json:"defaultTTL,omitempty"`
	MaxBytes   int64    `json:"maxBytes,omitempty"`
}

// Key is one API key name with the verifiers of the keys valid for it. During a rotation's
// grace period a name has two verifiers (new and previous) that share salt and iterations.
type Key struct {
	Name      string     `json:"name"`
	Verifiers []Verifier `json:"verifiers"`
}

// Verifier is what the pooler stores for one key: never the key itself.
type Verifier struct {
	// SCRAM is a SCRAM-SHA-256 verifier in PostgreSQL's format (see package apikey).
	SCRAM string `json:"scram"`
	// SHA256 is the hex SHA-256 digest of the key.
	SHA256 string `json:"sha256"`
	// Fingerprint is the key's short public identifier (apikey.Fingerprint).
	Fingerprint string `json:"fingerprint"`
	// NotAfter, when set, is the end of this key's validity (a rotation's grace period).
	NotAfter *time.Time `json:"notAfter,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s") in JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string such as "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Defaults returns a Config with every default filled in; Load starts from it.
func Defaults() Config {
	return Config{
		Listen:           Listen{Postgres: ":5432", HTTP: ":8443", Admin: ":8080"},
		Upstream:         Upstream{Port: 5432, SSLMode: upstream.SSLRequire},
		ClientAuthMethod: AuthSCRAM,
		Auth:             Auth{MaxFailuresPerSource: 20, FailureWindow: Duration{time.Minute}},
		Pool: Pool{
			Mode:                      ModeTransaction,
			Size:                      10,
			MaxClientConnections:      10000,
			QueryWaitTimeout:          Duration{30 * time.Second},
			IdleTransactionTimeout:    Duration{60 * time.Second},
			ServerLifetime:            Duration{time.Hour},
			ServerIdleTimeout:         Duration{10 * time.Minute},
			ConnectTimeout:            Duration{5 * time.Second},
			HealthCheckPeriod:         Duration{30 * time.Second},
			AuthTimeout:               Duration{10 * time.Second},
			ShutdownTimeout:           Duration{25 * time.Second},
			MaxMessageBytes:           64 << 20,
			PreparedStatementsPerConn: 256,
			PreparedStatementBytes:    16 << 20,
			ClientStallTimeout:        Duration{60 * time.Second},
			RelayLoop:                 true,
		},
		HTTP: HTTP{
			MaxRequestBytes:   4 << 20,
			MaxResponseBytes:  10 << 20,
			StatementTimeout:  Duration{30 * time.Second},
			ReadHeaderTimeout: Duration{10 * time.Second},
			BodyReadTimeout:   Duration{10 * time.Second},
			MaxInFlightPerKey: 256,
			Cache:             Cache{MaxBytes: 64 << 20},
			Accelerate: Accelerate{Enabled: true, MaxTransactionTimeout: Duration{15 * time.Second},
				MaxRequestBytes: 32 << 20},
		},
	}
}

// Parse decodes a config, filling unset fields with Defaults, and validates it.
func Parse(data []byte) (*Config, error) {
	cfg := Defaults()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse pooler config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Load reads and parses a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pooler config: %w", err)
	}
	return Parse(data)
}

// Verifiers returns the verifiers of the key called name and whether the name exists.
func (c *Config) Verifiers(name string) ([]Verifier, bool) {
	for i := range c.Keys {
		if c.Keys[i].Name == name {
			return c.Keys[i].Verifiers, true
		}
	}
	return nil, false
}

// UpstreamTarget is what a connection to the upstream needs, with the CA file read. It
// contains the password: never log it.
func (c *Config) UpstreamTarget() (upstream.Target, error) {
	t := upstream.Target{Host: c.Upstream.Host, Port: c.Upstream.Port, Database: c.Upstream.Database,
		User: c.Upstream.User, Password: c.Upstream.Password, SSLMode: c.Upstream.SSLMode,
		RequireAuth: c.Upstream.RequireAuth, ConnectTimeout: c.Pool.ConnectTimeout.Duration}
	if c.Upstream.CAFile != "" {
		ca, err := os.ReadFile(c.Upstream.CAFile)
		if err != nil {
			return upstream.Target{}, fmt.Errorf("upstream.caFile: %w", err)
		}
		t.CA = ca
	}
	return t, nil
}

// Marshal renders a config deterministically (stable field order, indented).
func (c *Config) Marshal() ([]byte, error) {
	return json.MarshalIndent(c, "", "  ")
}

// Validate reports every problem of the config at once, naming the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Listen.Postgres == "" && c.Listen.HTTP == "" {
		bad("listen", "at least one of postgres or http must be set")
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls", "certFile and keyFile are both required")
	}
	if c.Database == "" {
		bad("database", "required")
	}
	if c.Upstream.Host == "" {
		bad("upstream.host", "required")
	}
	if c.Upstream.Port < 1 || c.Upstream.Port > 65535 {
		bad("upstream.port", "must be 1-65535, got %d", c.Upstream.Port)
	}
	if c.Upstream.Database == "" {
		bad("upstream.database", "required")
	}
	if c.Upstream.User == "" {
		bad("upstream.user", "required")
	}
	switch c.Upstream.SSLMode {
	case upstream.SSLDisable, upstream.SSLPrefer, upstream.SSLRequire, upstream.SSLVerifyCA, upstream.SSLVerifyFull:
	default:
		bad("upstream.sslMode", "must be one of disable, prefer, require, verify-ca, verify-full; got %q", c.Upstream.SSLMode)
	}
	if err := upstream.CheckRequireAuth(c.Upstream.RequireAuth); err != nil {
		bad("upstream.requireAuth", "%v", err)
	}
	switch c.Pool.Mode {
	case ModeTransaction, ModeSession:
	default:
		bad("pool.mode", "must be transaction or session; got %q", c.Pool.Mode)
	}
	if c.Pool.Size < 1 {
		bad("pool.size", "must be at least 1, got %d", c.Pool.Size)
	}
	if c.Pool.MaxClientConnections < 1 {
		bad("pool.maxClientConnections", "must be at least 1, got %d", c.Pool.MaxClientConnections)
	}
	if c.Pool.MaxMessageBytes < 1024 {
		bad("pool.maxMessageBytes", "must be at least 1024, got %d", c.Pool.MaxMessageBytes)
	}
	switch c.ClientAuthMethod {
	case AuthSCRAM, AuthPassword:
	default:
		bad("clientAuthMethod", "must be %s or %s; got %q", AuthSCRAM, AuthPassword, c.ClientAuthMethod)
	}
	if c.Pool.MaxAuthenticatingConnections < 0 {
		bad("pool.maxAuthenticatingConnections", "must not be negative, got %d", c.Pool.MaxAuthenticatingConnections)
	}
	if c.HTTP.MaxInFlightPerKey < 0 {
		bad("http.maxInFlightPerKey", "must not be negative, got %d", c.HTTP.MaxInFlightPerKey)
	}
	if c.Auth.MaxFailuresPerSource < 0 {
		bad("auth.maxFailuresPerSource", "must not be negative, got %d", c.Auth.MaxFailuresPerSource)
	}
	if c.Auth.MaxFailuresPerSource > 0 && c.Auth.FailureWindow.Duration <= 0 {
		bad("auth.failureWindow", "must be positive when auth.maxFailuresPerSource is set")
	}
	if n := c.HTTP.Accelerate.MaxBindValues; n < 0 || n > 65535 {
		bad("http.accelerate.maxBindValues", "must be 0 (Prisma's default) to 65535, got %d", n)
	}
	if c.HTTP.Accelerate.MaxRequestBytes < 1024 {
		bad("http.accelerate.maxRequestBytes", "must be at least 1024, got %d", c.HTTP.Accelerate.MaxRequestBytes)
	}
	if c.HTTP.Accelerate.MaxTransactionTimeout.Duration < 0 {
		bad("http.accelerate.maxTransactionTimeout", "must not be negative")
	}
	if c.Pool.PreparedStatementsPerConn < 1 {
		bad("pool.preparedStatementsPerConn", "must be at least 1, got %d", c.Pool.PreparedStatementsPerConn)
	}
	if c.Pool.PreparedStatementBytes < 64<<10 {
		bad("pool.preparedStatementBytes", "must be at least 65536, got %d", c.Pool.PreparedStatementBytes)
	}
	if c.Pool.ClientStallTimeout.Duration < 0 {
		bad("pool.clientStallTimeout", "must not be negative")
	}
	for name, d := range map[string]Duration{
		"pool.queryWaitTimeout": c.Pool.QueryWaitTimeout, "pool.connectTimeout": c.Pool.ConnectTimeout,
		"pool.authTimeout": c.Pool.AuthTimeout, "http.readHeaderTimeout": c.HTTP.ReadHeaderTimeout,
	} {
		if d.Duration <= 0 {
			bad(name, "must be positive")
		}
	}
	seen := map[string]bool{}
	for i, k := range c.Keys {
		field := fmt.Sprintf("keys[%d]", i)
		if k.Name == "" {
			bad(field+".name", "required")
		}
		if seen[k.Name] {
			bad(field+".name", "duplicate key name %q", k.Name)
		}
		seen[k.Name] = true
		for j, v := range k.Verifiers {
			if v.SCRAM == "" || v.SHA256 == "" {
				bad(fmt.Sprintf("%s.verifiers[%d]", field, j), "scram and sha256 are required")
			}
		}
	}
	return errors.Join(errs...)
}
