package testutil

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a child process a test started with StartProcess.
type Process struct {
	Cmd *exec.Cmd
	// Logs holds what the process wrote to stdout and stderr.
	Logs *SyncBuffer
	// Exited receives the process's exit (cmd.Wait's error) once.
	Exited <-chan error
	done   chan struct{}
}

// StartProcess starts cmd with its output in Logs. When the test ends the process gets SIGTERM
// (a drain, for the pooler), then SIGKILL if it is still running 10 s later; its output is
// logged if the test failed.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	exited := make(chan error, 1)
	p := &Process{Cmd: cmd, Logs: &SyncBuffer{}, Exited: exited, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Logs, p.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		exited <- cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Path, p.Logs.String())
		}
	})
	return p
}
