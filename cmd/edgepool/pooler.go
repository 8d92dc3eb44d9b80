package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/config"
)

// runPooler runs the data plane: `edgepool pooler --config /etc/edgepool/config/pooler.json`.
// SIGTERM/SIGINT drain and exit; SIGHUP reloads the config file (it is also watched).
func runPooler(args []string) error {
	fs := flag.NewFlagSet("pooler", flag.ContinueOnError)
	path := fs.String("config", "/etc/edgepool/config/"+config.FileName, "pooler config file (JSON)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if os.Getenv("GOGC") == "" {
		// The relay allocates nothing per transaction, so the live heap is mostly idle
		// sessions and garbage comes from connection setup only; half the default headroom
		// keeps each idle client's resident cost down (docs/benchmarks.md) at a small GC cost
		// under connection churn. GOGC in the environment overrides it.
		debug.SetGCPercent(50)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return pooler.Run(ctx, pooler.RunOptions{ConfigPath: *path, Log: log, Reload: reload})
}
