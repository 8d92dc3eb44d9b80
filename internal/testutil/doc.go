// Package testutil is the one home of the helpers the tests share:
//
//   - waiting for an observed condition instead of sleeping: Eventually, EventuallyNoError, Poll;
//   - a TestMain that runs a package's tests against one shared PostgreSQL: RunWithPostgres
//     (a test of its own starts one with testpg.Start);
//   - envtest's kube-apiserver and etcd: EnvtestAssets;
//   - a server certificate and key on disk with the pool that trusts them: ServerTLS (issued by
//     internal/certs, as the operator issues them).
//
// Programs that are not tests (hack/demo, the node harness) use internal/pgserver and
// internal/envtestbin, which do not import "testing".
package testutil
