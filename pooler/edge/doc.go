// Package edge serves the pooler's edge transports on its HTTP listener:
//
//   - POST /sql, the HTTP SQL endpoint spoken by @neondatabase/serverless's neon() function
//     (one query, or a batch run in one transaction), with an opt-in result cache;
//   - Postgres over WebSocket (binary frames carry protocol bytes), handed to the same client
//     session code as TCP clients.
//
// The package keeps transport apart from pooling and auth: it borrows upstream connections
// through the Upstream interface and hands WebSocket connections to a ConnServer, so HTTP,
// WebSocket and TCP clients share one pool and one connection budget. docs/http-sql.md
// describes the wire format and the cache semantics.
package edge
