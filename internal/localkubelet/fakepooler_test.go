package localkubelet

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

// The test binary doubles as the container the harness runs (fakePoolerEnv set in the
// container's env): a stand-in for "edgepool pooler" that reads the mounted config on every
// request, serves /readyz and /healthz on the admin address, /info with what it sees, and on
// the postgres address answers every connection with its PID.
const fakePoolerEnv = "LOCALKUBELET_FAKE_POOLER"

type fakeInfo struct {
	PID    int               `json:"pid"`
	Config json.RawMessage   `json:"config"`
	Env    map[string]string `json:"env"`
	Args   []string          `json:"args"`
}

func runFakePooler() {
	fs := flag.NewFlagSet("pooler", flag.ExitOnError)
	configPath := fs.String("config", "", "config file")
	_ = fs.Parse(os.Args[2:]) // os.Args[1] is the "pooler" subcommand
	read := func() (map[string]any, []byte, error) {
		b, err := os.ReadFile(*configPath)
		if err != nil {
			return nil, nil, err
		}
		var cfg map[string]any
		err = json.Unmarshal(b, &cfg)
		return cfg, b, err
	}
	cfg, _, err := read()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake pooler:", err)
		os.Exit(1)
	}
	listen := cfg["listen"].(map[string]any)
	pgLn, err := net.Listen("tcp", listen["postgres"].(string))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake pooler:", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := pgLn.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%d\n", os.Getpid())
			c.Close()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat(os.Getenv("NOT_READY_FILE")); err == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) {
		_, raw, err := read()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		env := map[string]string{}
		for _, k := range []string{"GREETING", "POD_NAME", "FROM_SECRET", "TLS_DIR", "HOME"} {
			env[k] = os.Getenv(k)
		}
		_ = json.NewEncoder(w).Encode(fakeInfo{PID: os.Getpid(), Config: raw, Env: env, Args: os.Args[1:]})
	})
	adminLn, err := net.Listen("tcp", listen["admin"].(string))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake pooler:", err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(adminLn, mux) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	os.Exit(0)
}
