package session

import (
	"fmt"
	"sync/atomic"
)

// State is where a client session is in its life:
//
//	Startup → Auth → Idle ⇄ Waiting → Active → Idle … → Closed
//
// Idle: authenticated, no upstream connection. Waiting: acquiring one. Active: holding one (in
// transaction mode until a ReadyForQuery says the transaction ended with nothing outstanding;
// in session mode until the client leaves). Closed: ended, everything handed back.
//
// One goroutine at a time runs a session (the client loop, see loop.go), and only it changes the
// state, through setState, which checks the transition and keeps the proxy's per-state counters
// (the clients figures of Stats and /debug/pools). Other goroutines (the janitor, Stats, a cancel
// request) only read it.
type State int32

// Session states.
const (
	StateStartup State = iota
	StateAuth
	StateIdle
	StateWaiting
	StateActive
	StateClosed
	numStates
)

var stateNames = [...]string{"startup", "auth", "idle", "waiting", "active", "closed"}

func (s State) String() string {
	if s < 0 || s >= numStates {
		return fmt.Sprintf("State(%d)", int32(s))
	}
	return stateNames[s]
}

const (
	stateStartup = StateStartup
	stateAuth    = StateAuth
)

// transitions lists the states each state may move to (a bit per target state).
var transitions = [numStates]uint8{
	StateStartup: 1<<StateAuth | 1<<StateIdle | 1<<StateClosed,
	StateAuth:    1<<StateIdle | 1<<StateClosed,
	StateIdle:    1<<StateWaiting | 1<<StateClosed,
	StateWaiting: 1<<StateActive | 1<<StateIdle | 1<<StateClosed,
	StateActive:  1<<StateIdle | 1<<StateClosed,
	StateClosed:  0,
}

// counted are the states the proxy counts (Stats): authenticated sessions.
func counted(st State) bool { return st == StateIdle || st == StateWaiting || st == StateActive }

// setState moves the session to st. A transition the table does not allow is a bug in the
// relay: it panics, which ends only this session (see onPanic).
func (s *session) setState(to State) {
	from := State(s.state.Load())
	if from == to {
		return
	}
	if transitions[from]&(1<<to) == 0 {
		panic(fmt.Sprintf("session %d: invalid state transition %s → %s", s.pid, from, to))
	}
	s.state.Store(int32(to))
	if counted(from) {
		s.proxy.inState[from].Add(-1)
	}
	if counted(to) {
		s.proxy.inState[to].Add(1)
	}
}

// State returns the session's state.
func (s *session) State() State { return State(s.state.Load()) }

// phase says what the session's goroutine is blocked on, for the janitor (janitor.go), which
// enforces the timeouts that depend on it. It changes a few times per transaction: publishing
// it is one atomic store of the phase and the janitor's coarse clock.
type phase uint8

const (
	phaseBusy        phase = iota // working, or waiting for an upstream connection (pool's timeout)
	phaseIdle                     // between transactions, waiting for the client on its goroutine
	phaseParked                   // between transactions, no goroutine (reactor or small parked one)
	phaseSessionIdle              // session mode, between transactions: no timeout
	phaseIdleInTx                 // inside a transaction, waiting for the client: idleTransactionTimeout
	phaseUnsynced                 // sent extended-protocol messages without Sync: clientStallTimeout
	phaseCopyIn                   // in COPY FROM STDIN, waiting for the client's data: clientStallTimeout
	phaseServerWait               // waiting for the upstream's answer: client hang-up check
	phaseClientWrite              // writing the answer to the client: clientStallTimeout
	phaseServerWrite              // writing the request upstream
)

var phaseNames = [...]string{"busy", "idle", "parked", "session-idle", "idle-in-transaction", "unsynced",
	"copy-in", "server-wait", "client-write", "server-write"}

func (p phase) String() string { return phaseNames[p] }

// activity packs a phase and the janitor-clock time it began.
type activity struct{ v atomic.Uint64 }

func (a *activity) set(p phase, now int64) { a.v.Store(uint64(now)<<8 | uint64(p)) }

func (a *activity) get() (phase, int64) {
	v := a.v.Load()
	return phase(v & 0xff), int64(v >> 8)
}

// enter publishes that the session now waits on p.
func (s *session) enter(p phase) { s.activity.set(p, s.proxy.clock.Load()) }
