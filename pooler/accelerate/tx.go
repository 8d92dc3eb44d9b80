package accelerate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/edgepool/edgepool/pooler/edge"
)

// Interactive transactions: POST /transaction/start borrows one upstream connection from the
// shared pool and opens a transaction on it; /transaction/{id}/query runs plans on that
// connection, one at a time; commit or rollback ends it and returns the connection. The
// server enforces the client's timeout: when it passes, a running statement is cancelled,
// the transaction rolled back and the connection returned, and later requests for it get
// 409 P2028. A nested start (newTxId = an open id) makes a savepoint instead.

// txStatus is the state of an interactive transaction.
type txStatus int

const (
	txRunning txStatus = iota
	txCommitted
	txRolledBack
	txTimedOut
)

func (s txStatus) String() string {
	return [...]string{"running", "committed", "rolled_back", "timed_out"}[s]
}

// itx is one interactive transaction.
type itx struct {
	id      string
	keyName string // only the API key name that started it may use it
	timeout time.Duration
	started time.Time

	// sem is the transaction's lock: one operation at a time uses the connection, so
	// concurrent requests of one transaction are serialised.
	sem chan struct{}
	// expired ends when the timeout passes or the server drains; it cancels the running
	// statement.
	expired context.Context
	expire  context.CancelCauseFunc
	timer   *time.Timer

	// Guarded by sem.
	lease      edge.Lease
	depth      int
	savepoints []string
	spCounter  int
	// endAs is set by a commit or rollback: withTx ends the transaction so once the
	// operation is over, never while it still uses the connection.
	endAs txStatus

	// Guarded by txManager.mu.
	status txStatus
}

// closedTx is what is remembered of a finished transaction, for the errors of late requests.
type closedTx struct {
	id      string
	status  txStatus
	timeout time.Duration
	started time.Time
}

// maxClosedTransactions is how many finished transactions are remembered.
const maxClosedTransactions = 100

var (
	errTxExpired     = errors.New("transaction expired")
	errServerClosing = errors.New("server is shutting down")
	errStartTimeout  = errors.New("transaction start timed out")
)

// txOptions is the body of POST /transaction/start.
type txOptions struct {
	maxWait        float64 // ms
	timeout        float64 // ms
	isolationLevel string
	newTxID        string
}

// txManager holds the open interactive transactions of the server.
type txManager struct {
	upstream   edge.Upstream
	maxTimeout time.Duration
	metrics    *Metrics
	onFinish   func(id string, status txStatus) // tests observe endings

	mu       sync.Mutex
	open     map[string]*itx
	closed   []closedTx
	draining bool
	wg       sync.WaitGroup // expiry handlers in flight
}

func newTxManager(up edge.Upstream, maxTimeout time.Duration, m *Metrics) *txManager {
	return &txManager{upstream: up, maxTimeout: maxTimeout, metrics: m, open: map[string]*itx{}}
}

// isolationLevels are the levels a transaction may ask for.
var isolationLevels = map[string]bool{"READ UNCOMMITTED": true, "READ COMMITTED": true, "REPEATABLE READ": true, "SERIALIZABLE": true}

// start opens a transaction, or a savepoint in an open one (newTxID).
func (m *txManager) start(ctx context.Context, keyName string, opts txOptions) (string, error) {
	if opts.newTxID != "" {
		err := m.withTx(ctx, opts.newTxID, keyName, "start", func(opCtx context.Context, tx *itx, conn *dbConn) error {
			name := "prisma_sp_" + strconv.Itoa(tx.spCounter)
			tx.spCounter++
			if _, err := conn.run(opCtx, "SAVEPOINT "+name); err != nil {
				return err
			}
			tx.depth++
			tx.savepoints = append(tx.savepoints, name)
			return nil
		})
		if err != nil {
			return "", err
		}
		return opts.newTxID, nil
	}
	if opts.timeout == 0 {
		return "", txAPIError("timeout is required", nil)
	}
	if opts.maxWait == 0 {
		return "", txAPIError("maxWait is required", nil)
	}
	if opts.isolationLevel == "SNAPSHOT" {
		return "", txAPIError("Invalid isolation level: SNAPSHOT", recordOf("isolationLevel", "SNAPSHOT"))
	}
	if opts.isolationLevel != "" && !isolationLevels[opts.isolationLevel] {
		return "", badRequest("invalid isolationLevel " + strconv.Quote(opts.isolationLevel))
	}
	timeout := time.Duration(opts.timeout * float64(time.Millisecond))
	if m.maxTimeout > 0 && timeout > m.maxTimeout {
		timeout = m.maxTimeout
	}
	m.mu.Lock()
	draining := m.draining
	m.mu.Unlock()
	if draining {
		return "", txAPIError("the server is shutting down and starts no new transactions", nil)
	}

	waitCtx, cancel := context.WithTimeoutCause(ctx, time.Duration(opts.maxWait*float64(time.Millisecond)), errStartTimeout)
	defer cancel()
	lease, err := m.upstream.Acquire(waitCtx)
	if err != nil {
		d := asDriverError(err)
		// maxWait, or the pool's own wait limit when that is shorter, ran out.
		if errors.Is(context.Cause(waitCtx), errStartTimeout) || (d != nil && d.kind == "TooManyConnections") {
			return "", txAPIError("Unable to start a transaction in the given time.", nil)
		}
		if d != nil {
			return "", userFacingDBError(d, false)
		}
		return "", err
	}
	begin := "BEGIN"
	if opts.isolationLevel != "" {
		begin = "BEGIN ISOLATION LEVEL " + opts.isolationLevel
	}
	conn := &dbConn{pc: lease.PgConn()}
	cancelled, err := guarded(waitCtx, conn.pc, func(opCtx context.Context) error {
		_, err := conn.run(opCtx, begin)
		return err
	})
	if err != nil || cancelled {
		if cancelled {
			closeConn(conn.pc)
		}
		lease.Release()
		if errors.Is(context.Cause(waitCtx), errStartTimeout) {
			return "", txAPIError("Unable to start a transaction in the given time.", nil)
		}
		if d := asDriverError(err); d != nil {
			return "", userFacingDBError(d, false)
		}
		return "", fmt.Errorf("begin transaction: %w", err)
	}

	tx := &itx{id: uuid.NewString(), // opaque; the reference uses UUIDs too
		keyName: keyName, timeout: timeout, started: time.Now(), sem: make(chan struct{}, 1),
		lease: lease, depth: 1}
	tx.expired, tx.expire = context.WithCancelCause(context.Background())
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		rollbackAndRelease(tx)
		return "", txAPIError("the server is shutting down and starts no new transactions", nil)
	}
	m.open[tx.id] = tx
	m.wg.Add(1)
	// Set under mu: the expiry handler reads it after taking mu.
	tx.timer = time.AfterFunc(timeout, func() { m.expireTx(tx, errTxExpired) })
	m.mu.Unlock()
	m.metrics.openTransactions.Inc()
	return tx.id, nil
}

// end commits or rolls back the transaction; in a nested one it releases, or rolls back to,
// the innermost savepoint.
func (m *txManager) end(ctx context.Context, id, keyName string, commit bool, logs *logSink) error {
	operation, statement, status := "rollback", "ROLLBACK", txRolledBack
	if commit {
		operation, statement, status = "commit", "COMMIT", txCommitted
	}
	return m.withTx(ctx, id, keyName, operation, func(opCtx context.Context, tx *itx, conn *dbConn) error {
		if tx.depth > 1 {
			name := tx.savepoints[len(tx.savepoints)-1]
			tx.savepoints = tx.savepoints[:len(tx.savepoints)-1]
			tx.depth--
			if !commit {
				if _, err := conn.run(opCtx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
					return err
				}
			}
			_, err := conn.run(opCtx, "RELEASE SAVEPOINT "+name)
			return err
		}
		start := time.Now()
		_, err := conn.run(opCtx, statement)
		logs.query(start, time.Since(start), statement, nil)
		if err != nil {
			status = txRolledBack
		}
		tx.endAs = status
		return err
	})
}

// withTx runs fn on an open transaction's connection, holding the transaction's lock. It
// answers P2028 for a transaction that is unknown, finished, or expires meanwhile.
func (m *txManager) withTx(ctx context.Context, id, keyName, operation string, fn func(opCtx context.Context, tx *itx, conn *dbConn) error) error {
	m.mu.Lock()
	tx, ok := m.open[id]
	if ok && tx.keyName != keyName {
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		return m.closedError(id, operation)
	}
	select {
	case tx.sem <- struct{}{}:
	case <-tx.expired.Done():
		return m.endedError(tx, operation)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-tx.sem }()
	if tx.expired.Err() != nil {
		return m.endedError(tx, operation)
	}
	// The operation ends with the request, or when the transaction expires.
	opCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(tx.expired, func() { cancel(context.Cause(tx.expired)) })
	defer stop()
	conn := &dbConn{pc: tx.lease.PgConn()}
	cancelled, err := guarded(opCtx, conn.pc, func(guardedCtx context.Context) error { return fn(guardedCtx, tx, conn) })
	if cancelled {
		// A cancel may reach a later statement; the transaction cannot go on.
		closeConn(conn.pc)
	}
	if expiryCause(tx) != nil && (err != nil || cancelled) {
		return m.endedError(tx, operation) // the expiry handler, waiting for the lock, ends it
	}
	switch {
	case tx.endAs != txRunning: // a COMMIT that succeeded counts even if the connection went since
		m.finishLocked(tx, tx.endAs)
	case conn.pc.IsClosed():
		m.finishLocked(tx, txRolledBack)
	}
	if err != nil {
		if cancelled && errors.Is(context.Cause(opCtx), errQueryTimeout) {
			return resourceLimit("P6004", "Query timeout exceeded")
		}
		var api *apiError
		if errors.As(err, &api) {
			return api
		}
		if d := asDriverError(err); d != nil {
			return userFacingDBError(d, false)
		}
	}
	return err
}

// finishLocked ends a transaction (the caller holds its lock and no longer uses the
// connection): rolls back unless it was committed, returns the connection and remembers the
// outcome.
func (m *txManager) finishLocked(tx *itx, status txStatus) {
	m.mu.Lock()
	if tx.status != txRunning {
		m.mu.Unlock()
		return
	}
	tx.status = status
	delete(m.open, tx.id)
	m.closed = append(m.closed, closedTx{id: tx.id, status: status, timeout: tx.timeout, started: tx.started})
	if len(m.closed) > maxClosedTransactions {
		m.closed = m.closed[1:]
	}
	m.mu.Unlock()
	if tx.timer.Stop() {
		m.wg.Done() // the expiry handler will not run
	}
	if status != txCommitted {
		rollbackAndRelease(tx)
	} else {
		tx.lease.Release()
	}
	tx.expire(nil)
	m.metrics.openTransactions.Dec()
	m.metrics.transactions.WithLabelValues(status.String()).Inc()
	if m.onFinish != nil {
		m.onFinish(tx.id, status)
	}
}

// rollbackAndRelease ends whatever transaction the connection is in and returns it; one that
// cannot be rolled back is closed (the pool then drops it).
func rollbackAndRelease(tx *itx) {
	endTransaction(tx.lease.PgConn())
	tx.lease.Release()
}

// expireTx ends a transaction whose time is up (or that the server drops): the running
// statement is cancelled, then the transaction is rolled back and its connection returned.
func (m *txManager) expireTx(tx *itx, cause error) {
	tx.expire(cause)
	tx.sem <- struct{}{}
	status := txTimedOut
	if errors.Is(cause, errServerClosing) {
		status = txRolledBack
	}
	m.finishLocked(tx, status)
	<-tx.sem
	if errors.Is(cause, errTxExpired) {
		m.wg.Done()
	}
}

// expiryCause is errTxExpired or errServerClosing when the transaction was ended for that
// reason, nil while it runs or when a commit or rollback ended it.
func expiryCause(tx *itx) error {
	cause := context.Cause(tx.expired)
	if errors.Is(cause, errTxExpired) || errors.Is(cause, errServerClosing) {
		return cause
	}
	return nil
}

// endedError is the P2028 error of an operation on a transaction that ended: past its
// timeout, dropped by a drain, or finished by another request.
func (m *txManager) endedError(tx *itx, operation string) error {
	switch cause := expiryCause(tx); {
	case errors.Is(cause, errTxExpired):
		return timeoutError(operation, tx.timeout, tx.started)
	case errors.Is(cause, errServerClosing):
		return txAPIError("Transaction already closed: A "+operation+" cannot be executed on a transaction that was rolled back.", nil)
	}
	return m.closedError(tx.id, operation)
}

func timeoutError(operation string, timeout time.Duration, started time.Time) error {
	ms := timeout.Milliseconds()
	taken := time.Since(started).Milliseconds()
	return txAPIError(fmt.Sprintf("A %s cannot be executed on an expired transaction. The timeout for this transaction was %d ms, however %d ms passed since the start of the transaction. Consider increasing the interactive transaction timeout or doing less work in the transaction.", operation, ms, taken),
		recordOf("operation", operation, "timeout", float64(ms), "timeTaken", float64(taken)))
}

// closedError explains why a transaction id cannot be used.
func (m *txManager) closedError(id, operation string) error {
	m.mu.Lock()
	var found *closedTx
	for i := len(m.closed) - 1; i >= 0; i-- {
		if m.closed[i].id == id {
			c := m.closed[i]
			found = &c
			break
		}
	}
	m.mu.Unlock()
	if found == nil {
		return txAPIError("Transaction not found. Transaction ID is invalid, refers to an old closed transaction Prisma doesn't have information about anymore, or was obtained before disconnecting.", nil)
	}
	switch found.status {
	case txCommitted:
		return txAPIError("Transaction already closed: A "+operation+" cannot be executed on a committed transaction.", nil)
	case txTimedOut:
		return timeoutError(operation, found.timeout, found.started)
	}
	return txAPIError("Transaction already closed: A "+operation+" cannot be executed on a transaction that was rolled back.", nil)
}

// close rolls back every open transaction and refuses new ones (the pooler drains).
func (m *txManager) close() {
	m.mu.Lock()
	m.draining = true
	open := make([]*itx, 0, len(m.open))
	for _, tx := range m.open {
		open = append(open, tx)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, tx := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.expireTx(tx, errServerClosing)
		}()
	}
	wg.Wait()
	m.wg.Wait()
}
