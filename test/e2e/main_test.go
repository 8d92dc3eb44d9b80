//go:build e2e

// Package e2e walks the user's path through the real parts: the envtest control plane, the
// operator (bin/edgepool manager), pooler processes (bin/edgepool pooler, run by the local
// kubelet harness), a real PostgreSQL and real clients (pgx, psql, HTTP, a Cloudflare Worker
// under wrangler dev). Run with `make test-e2e` (builds bin/edgepool first).
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgepool/edgepool/internal/localenv"
)

const (
	namespace = "default"
	poolName  = "shop"
	region    = "eu-central-1"
)

var (
	env      *localenv.Env
	database localenv.Database
	logPath  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "edgepool-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logPath = filepath.Join(dir, "e2e.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logFile.Close()
	// The context lives as long as the suite: the harness and its processes run under it.
	ctx := context.Background()
	start := time.Now()
	env, err = localenv.Start(ctx, localenv.Options{RepoRoot: root, Region: region, Dir: dir,
		Log: slog.New(slog.NewTextHandler(logFile, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start local edgepool:", err, "\nlog:", logPath)
		return 1
	}
	code := 1
	defer func() {
		env.Close()
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "e2e: harness and operator logs kept in", dir)
		}
	}()
	if database, err = env.CreateDatabase(ctx, "shop", "shop_app", localenv.SampleSchema); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local edgepool up in %v (log %s)\n", time.Since(start).Round(time.Millisecond), logPath)
	code = m.Run()
	return code
}
