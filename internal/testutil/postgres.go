package testutil

import (
	"fmt"
	"os"
	"testing"

	"github.com/edgepool/edgepool/internal/testpg"
)

// RunWithPostgres is the body of a TestMain whose tests share one PostgreSQL server: it starts
// the server, stores it in *pg, runs setup on it (when not nil), runs the tests, closes the
// server and returns the exit code for os.Exit. Without PostgreSQL 15 (hack/install-test-deps.sh)
// it says so and returns 1.
//
//	var pg *testpg.Server
//
//	func TestMain(m *testing.M) { os.Exit(testutil.RunWithPostgres(m, &pg, nil)) }
func RunWithPostgres(m *testing.M, pg **testpg.Server, setup func(*testpg.Server) error, opts ...testpg.Option) int {
	s, err := testpg.New(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "these tests need PostgreSQL 15 (hack/install-test-deps.sh):", err)
		return 1
	}
	defer s.Close()
	if setup != nil {
		if err := setup(s); err != nil {
			fmt.Fprintln(os.Stderr, "set up PostgreSQL for the tests:", err)
			return 1
		}
	}
	*pg = s
	return m.Run()
}
