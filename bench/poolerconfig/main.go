// Command poolerconfig writes the edgepool pooler config used by the benchmark (bench/run.sh).
//
// It builds the file from the pooler's own config types (package pooler/config) and a fresh API
// key (package pooler/apikey), so a schema change breaks the benchmark at compile time instead of
// silently benchmarking a misconfigured pooler. The key is printed on stdout; the file holds only
// its verifiers.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "poolerconfig:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out          = flag.String("out", "", "config file to write")
		listen       = flag.String("listen", "", "Postgres listener host:port")
		httpAddr     = flag.String("http", "", "HTTP listener host:port")
		httpEndpoint = flag.Bool("http-endpoint", true, "enable the HTTP SQL endpoint and WebSocket transport")
		admin        = flag.String("admin", "", "admin listener host:port")
		database     = flag.String("db", "bench", "database name clients ask for")
		upHost       = flag.String("upstream-host", "127.0.0.1", "upstream host")
		upPort       = flag.Int("upstream-port", 5432, "upstream port")
		upDB         = flag.String("upstream-db", "bench", "upstream database")
		upUser       = flag.String("upstream-user", "bench", "upstream user")
		keyName      = flag.String("key-name", "bench", "API key name (the client user name)")
		mode         = flag.String("mode", config.ModeTransaction, "pool mode")
		poolSize     = flag.Int("pool-size", 20, "upstream connections")
		maxClients   = flag.Int("max-clients", 10500, "max client connections")
		allowCleartx = flag.Bool("allow-cleartext", true, "allow cleartext passwords without TLS (loopback only)")
		tlsCert      = flag.String("tls-cert", "", "server certificate file (enables TLS: SSLRequest answered S)")
		tlsKey       = flag.String("tls-key", "", "its key file")
		keyOut       = flag.String("key-out", "", "also write the API key to this file (mode 0600)")
	)
	flag.Parse()
	upPassword := os.Getenv("UPSTREAM_PASSWORD") // not a flag: keep it out of ps output
	if *out == "" || *listen == "" || *admin == "" || *httpAddr == "" {
		return errors.New("-out, -listen, -http and -admin are required")
	}

	key, err := apikey.Generate()
	if err != nil {
		return err
	}
	salt, err := apikey.NewSalt()
	if err != nil {
		return err
	}
	scram, err := apikey.NewSCRAMVerifier(key, salt, apikey.DefaultIterations)
	if err != nil {
		return fmt.Errorf("scram verifier: %w", err)
	}

	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: *listen, HTTP: *httpAddr, Admin: *admin}
	cfg.Database = *database
	cfg.Upstream = config.Upstream{
		Host: *upHost, Port: *upPort, Database: *upDB, User: *upUser, Password: upPassword,
		SSLMode: "disable",
	}
	cfg.Pool.Mode = *mode
	cfg.Pool.Size = *poolSize
	cfg.Pool.MaxClientConnections = *maxClients
	cfg.AllowCleartextWithoutTLS = *allowCleartx
	cfg.HTTP.Enabled = *httpEndpoint
	if *tlsCert != "" {
		cfg.TLS = &config.TLS{CertFile: *tlsCert, KeyFile: *tlsKey}
	}
	cfg.Keys = []config.Key{{
		Name: *keyName,
		Verifiers: []config.Verifier{{
			SCRAM:       scram.String(),
			SHA256:      apikey.Digest(key),
			Fingerprint: apikey.Fingerprint(key),
		}},
	}}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("generated config is invalid: %w", err)
	}
	data, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	if err := os.WriteFile(*out, data, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if *keyOut != "" {
		if err := os.WriteFile(*keyOut, []byte(key), 0o600); err != nil {
			return fmt.Errorf("write key: %w", err)
		}
	}
	fmt.Println(key)
	return nil
}
