// Package accelerate serves the Prisma Accelerate protocol on the pooler's HTTP listener, so
// that Prisma 7 apps (accelerateUrl, @prisma/extension-accelerate) reach the pool by changing
// one URL:
//
//	GET  /connection-info              provider and capabilities (once per PrismaClient)
//	POST /query                        run a compiled query plan
//	POST /transaction/start            open an interactive transaction ({id})
//	POST /transaction/{id}/query       run a plan inside it
//	POST /transaction/{id}/commit      commit it (or release a nested savepoint)
//	POST /transaction/{id}/rollback    roll it back (or back to a nested savepoint)
//	POST /invalidate                   drop cached results by tag, or all of a key's
//
// Prisma 7 compiles every query in the client and posts the plan: SQL fragments with
// placeholders, parameters, and how to shape the rows. The interpreter here runs those plans
// with the semantics of Prisma's reference executor (@prisma/query-plan-executor), on one
// connection borrowed from the pooler's shared pool per request, or held for the life of an
// interactive transaction. Keys are checked and results cached through the same small
// interfaces as the edge transports (edge.KeyChecker, edge.Upstream, edge.Cache).
// docs/accelerate.md describes the protocol, what is supported and the cache semantics.
package accelerate
