package auth

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKnownAndUnknownNamesCostTheSame: limit proved — key names cannot be told apart by the
// time a check takes. Small batches of checks of a known and of an unknown name alternate on
// one locked OS thread, timed by the thread's CPU clock (time the machine spends on other
// processes does not count, and noise that remains hits both sides alike); the medians of the
// two sides must be within 10 %. BenchmarkKeyCheck reports the same costs for make bench.
func TestKnownAndUnknownNamesCostTheSame(t *testing.T) {
	ring := timingRing(t)
	const rounds, batch = 301, 25
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for kind, check := range checkers {
		t.Run(kind, func(t *testing.T) {
			timeBatch := func(name string) float64 {
				start := threadCPU(t)
				for range batch {
					check(ring, name)
				}
				return float64(threadCPU(t)-start) / batch
			}
			timeBatch("known") // warm up
			known := make([]float64, 0, rounds)
			unknown := make([]float64, 0, rounds)
			for r := range rounds {
				if r%2 == 0 {
					known = append(known, timeBatch("known"))
					unknown = append(unknown, timeBatch("unknown"))
				} else {
					unknown = append(unknown, timeBatch("unknown"))
					known = append(known, timeBatch("known"))
				}
			}
			k, u := median(known), median(unknown)
			ratio := u / k
			t.Logf("%s: %.0f ns per check of a known name, %.0f ns of an unknown one (medians of %d batches of %d); ratio %.3f",
				kind, k, u, rounds, batch, ratio)
			if ratio < 0.9 || ratio > 1.1 {
				t.Fatalf("unknown/known check time ratio %.3f, want within 10 %% of 1", ratio)
			}
		})
	}
}

// threadCPU is the CPU time the calling OS thread has used.
func threadCPU(t *testing.T) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	return s[len(s)/2]
}
