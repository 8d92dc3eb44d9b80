// Development only: Prisma's reference Accelerate-protocol server (@prisma/query-plan-executor 7.10.0) on
// a loopback port, for validating edgepool's Prisma suite (test/prisma) against it.
//   node serve.mjs <postgres-url>      prints {"url":"http://127.0.0.1:PORT"} once listening
import http from "node:http";
import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { Server, parseDuration } from "@prisma/query-plan-executor";

// The executor keeps its per-request logger in the OpenTelemetry context (its CLI registers this).
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const databaseUrl = process.argv[2];
const server = await Server.create({
  databaseUrl,
  queryTimeout: parseDuration("30000"),
  maxTransactionTimeout: parseDuration("60000"),
  maxTransactionWaitTime: parseDuration("10000"),
  maxResponseSize: 64 * 1024 * 1024,
  perRequestLogContext: { logFormat: "text", logLevel: process.env.QPE_LOG ?? "off" },
});
const node = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
  try {
    const r = await server.fetch(new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method, headers, body: body.length ? body : undefined,
    }));
    const out = Buffer.from(await r.arrayBuffer());
    const h = {};
    r.headers.forEach((v, k) => { h[k] = v; });
    res.writeHead(r.status, h);
    res.end(out);
  } catch (e) {
    res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(e) }));
  }
});
// A Prisma client compiling a large plan blocks its event loop for seconds; a short keep-alive
// timeout closes the idle socket under it and the next POST fails with EPIPE ("fetch failed").
node.keepAliveTimeout = 120_000;
node.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ url: `http://127.0.0.1:${node.address().port}` })));
process.on("SIGTERM", async () => { node.close(); await server.shutdown(); process.exit(0); });
