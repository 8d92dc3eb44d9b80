// Command http is a small closed-loop load generator for edgepool's HTTP SQL endpoint: C
// workers each send one POST /sql after another for a fixed time, and it reports requests per
// second and latency percentiles. It is a measurement tool, not a test.
//
//	go run ./bench/http -url http://127.0.0.1:8443/sql -conn "$DATABASE_URL" -c 50 -d 15s
//
// The connection string (with the API key as password) can come from EDGEPOOL_CONN instead of
// -conn, so it stays out of the process list.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "POST /sql endpoint, e.g. http://127.0.0.1:8443/sql")
	conn := flag.String("conn", os.Getenv("EDGEPOOL_CONN"), "connection string sent as Neon-Connection-String (or EDGEPOOL_CONN)")
	concurrency := flag.Int("c", 50, "concurrent requests")
	duration := flag.Duration("d", 10*time.Second, "measurement time")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up time")
	query := flag.String("query", "select 1 as one", "the query each request sends")
	cache := flag.String("cache-control", "", "Cache-Control header to send (e.g. max-age=60 to measure cache hits)")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	if *url == "" || *conn == "" {
		fmt.Fprintln(os.Stderr, "usage: http -url URL -conn CONNSTRING [-c 50] [-d 10s]")
		os.Exit(2)
	}
	res, err := run(*url, *conn, *query, *cache, *concurrency, *warmup, *duration)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/http:", err)
		os.Exit(1)
	}
	if *asJSON {
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "bench/http:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Printf("POST /sql %q, %d concurrent, %s: %d requests, %d errors, %.0f req/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n",
		*query, *concurrency, *duration, res.Requests, res.Errors, res.RequestsPerSec, res.P50ms, res.P90ms, res.P99ms)
}

type result struct {
	Concurrency    int     `json:"concurrency"`
	Seconds        float64 `json:"seconds"`
	Requests       int     `json:"requests"`
	Errors         int     `json:"errors"`
	RequestsPerSec float64 `json:"requestsPerSec"`
	P50ms          float64 `json:"p50ms"`
	P90ms          float64 `json:"p90ms"`
	P99ms          float64 `json:"p99ms"`
	FirstError     string  `json:"firstError,omitempty"`
}

func run(url, conn, query, cacheControl string, concurrency int, warmup, duration time.Duration) (result, error) {
	body, err := json.Marshal(struct {
		Query  string   `json:"query"`
		Params []string `json:"params"`
	}{query, []string{}})
	if err != nil {
		return result{}, err
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency, IdleConnTimeout: time.Minute,
	}, Timeout: 30 * time.Second}
	send := func() error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Neon-Connection-String", conn)
		req.Header.Set("Content-Type", "application/json")
		if cacheControl != "" {
			req.Header.Set("Cache-Control", cacheControl)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
		}
		return nil
	}
	if err := send(); err != nil {
		return result{}, fmt.Errorf("first request failed: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), warmup+duration)
	defer cancel()
	measureFrom := time.Now().Add(warmup)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errCount  int
		firstErr  error
		wg        sync.WaitGroup
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var myErrs int
			var myFirst error
			for ctx.Err() == nil {
				start := time.Now()
				err := send()
				if start.Before(measureFrom) || ctx.Err() != nil {
					continue
				}
				if err != nil {
					myErrs++
					if myFirst == nil {
						myFirst = err
					}
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errCount += myErrs
			firstErr = errors.Join(firstErr, myFirst)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))]) / float64(time.Millisecond)
	}
	r := result{Concurrency: concurrency, Seconds: duration.Seconds(), Requests: len(latencies), Errors: errCount,
		RequestsPerSec: float64(len(latencies)) / duration.Seconds(), P50ms: pct(0.50), P90ms: pct(0.90), P99ms: pct(0.99)}
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	return r, nil
}
