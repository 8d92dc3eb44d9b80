// Package testwait waits in tests for a condition to be observed (a metric, a status, a row),
// instead of sleeping for a guessed time.
package testwait

import (
	"testing"
	"time"
)

// For polls cond every 10 ms until it holds, failing the test after timeout.
func For(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
