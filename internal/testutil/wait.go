package testutil

import (
	"errors"
	"testing"
	"time"
)

// Poll calls cond until it returns nil or timeout has passed, and returns cond's last error
// (nil when it held). It checks at once, then after 10 ms, doubling the pause up to 100 ms, so
// a cheap condition is seen quickly and an expensive one (an API server list) is not hammered.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// EventuallyNoError waits until cond returns nil and fails the test with what and cond's last
// error if it does not within timeout.
func EventuallyNoError(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// Eventually waits until cond holds and fails the test with what if it does not within
// timeout.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if Poll(timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}) != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

var errNotYet = errors.New("not yet")
