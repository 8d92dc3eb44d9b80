package auth

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// TestGuardFailureBudget: a source gets MaxFailuresPerSource failures, then is refused until
// its budget refills at MaxFailuresPerSource per FailureWindow; other sources are not affected;
// refusals do not spend the budget.
func TestGuardFailureBudget(t *testing.T) {
	var counted []string
	g := NewGuard(slog.New(slog.DiscardHandler), func(transport, reason string) { counted = append(counted, transport+"/"+reason) },
		GuardSettings{MaxFailuresPerSource: 3, FailureWindow: 3 * time.Second})
	now := time.Unix(1000, 0)
	attacker, other := tcpAddr("192.0.2.7:40000"), tcpAddr("192.0.2.8:40000")
	fail := func(addr net.Addr, at time.Time) {
		g.Failed(Attempt{Transport: "tcp", Remote: addr, Name: "x", Reason: ReasonWrongKey}, at)
	}
	for i := range 3 {
		if _, ok := g.Allow(attacker, now); !ok {
			t.Fatalf("attempt %d refused within the budget", i)
		}
		fail(attacker, now)
	}
	retry, ok := g.Allow(tcpAddr("192.0.2.7:40001"), now) // another port of the same address
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("over budget: ok=%v retry=%v, want refused for up to 1s", ok, retry)
	}
	g.Failed(Attempt{Transport: "tcp", Remote: attacker, Reason: ReasonOverBudget}, now)
	if _, ok := g.Allow(other, now); !ok {
		t.Fatal("another source refused")
	}
	if _, ok := g.Allow(attacker, now.Add(999*time.Millisecond)); ok {
		t.Fatal("refused source allowed before a token refilled")
	}
	if _, ok := g.Allow(attacker, now.Add(time.Second)); !ok {
		t.Fatal("source still refused after one token refilled (the refusal must not have spent one)")
	}
	fail(attacker, now.Add(time.Second))
	if _, ok := g.Allow(attacker, now.Add(time.Second)); ok {
		t.Fatal("one refilled token allowed two failures")
	}
	if got := strings.Join(counted, ","); got != "tcp/wrong_key,tcp/wrong_key,tcp/wrong_key,tcp/too_many_failures,tcp/wrong_key" {
		t.Fatalf("counted %s", got)
	}

	g.Update(GuardSettings{}) // budget off
	if _, ok := g.Allow(attacker, now.Add(time.Second)); !ok {
		t.Fatal("budget off, still refused")
	}
	var nilGuard *Guard
	if _, ok := nilGuard.Allow(attacker, now); !ok {
		t.Fatal("nil guard refused")
	}
	nilGuard.Failed(Attempt{}, now)
}

// TestGuardLogsRateLimited: every failure is logged at info with transport, remote address,
// key name and reason (never a key) until the log budget is spent; the next line that gets
// through says how many were left out.
func TestGuardLogsRateLimited(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	g := NewGuard(log, nil, GuardSettings{})
	now := time.Unix(1000, 0)
	for i := range logBurst + 30 {
		g.Failed(Attempt{Transport: "http", Remote: tcpAddr("198.51.100.1:5000"), Name: "ci", Reason: ReasonUnknownName}, now.Add(time.Duration(i)))
	}
	g.Failed(Attempt{Transport: "tcp", Remote: tcpAddr("[2001:db8::1]:5432"), Name: "app", Reason: ReasonWrongKey}, now.Add(time.Second))
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != logBurst+1 {
		t.Fatalf("%d lines logged, want %d (burst) + 1", len(lines), logBurst+1)
	}
	first, last := lines[0], lines[len(lines)-1]
	for _, want := range []string{"level=INFO", `msg="authentication failed"`, "transport=http", "remote=198.51.100.1:5000", "keyName=ci", "reason=unknown_key_name"} {
		if !strings.Contains(first, want) {
			t.Errorf("log line %q lacks %s", first, want)
		}
	}
	if !strings.Contains(last, "notLoggedBefore=30") || !strings.Contains(last, "remote=[2001:db8::1]:5432") {
		t.Errorf("line after the limit: %q", last)
	}
}

func TestSourceOf(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{tcpAddr("192.0.2.1:1"), "192.0.2.1"},
		{tcpAddr("[::ffff:192.0.2.1]:1"), "192.0.2.1"},
		{tcpAddr("[2001:db8:1:2:3:4:5:6]:1"), "2001:db8:1:2::"},
		{nil, ""},
	} {
		got, ok := sourceOf(tt.addr)
		if (tt.want == "") == ok || (ok && got.String() != tt.want) {
			t.Errorf("sourceOf(%v) = %v %v, want %q", tt.addr, got, ok, tt.want)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
