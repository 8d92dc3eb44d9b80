// A small shop API on Cloudflare Workers, reading Postgres through an edgepool pool.
//
//   GET /products/tcp   node-postgres (`pg`) over TCP: the Postgres wire protocol, pooled by
//                       edgepool, so a Worker can open a connection per request cheaply.
//   GET /products/http  the Neon serverless driver's neon() over HTTP: one fetch per query to
//                       the pool's /sql endpoint; no TCP connection at all.
//
// Both take ?max_price=<cents>. The connection strings come from Worker secrets copied from the
// pool's app Secret (<pool>-<key>): DATABASE_URL, and HTTP_URL for the HTTP route.
import { Hono } from "hono";
import { Client } from "pg";
import { neon, neonConfig } from "@neondatabase/serverless";

type Bindings = {
  DATABASE_URL: string;
  HTTP_URL?: string;
};

const app = new Hono<{ Bindings: Bindings }>();

const productsSQL = "select id, name, price_cents from products where price_cents <= $1 order by id";

function maxPrice(raw: string | undefined): number {
  const n = Number(raw ?? "1000000");
  return Number.isFinite(n) ? n : 1000000;
}

app.get("/products/tcp", async (c) => {
  // A connection per request: edgepool keeps the upstream connections, so this is cheap.
  const client = new Client({ connectionString: c.env.DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query(productsSQL, [maxPrice(c.req.query("max_price"))]);
    return c.json({ via: "pg over TCP", products: rows });
  } finally {
    c.executionCtx.waitUntil(client.end());
  }
});

app.get("/products/http", async (c) => {
  // neon() sends each query as one HTTP request to the pool's /sql endpoint; fetchEndpoint
  // points it at the pool instead of Neon's default host.
  if (c.env.HTTP_URL) {
    const endpoint = c.env.HTTP_URL;
    neonConfig.fetchEndpoint = () => endpoint;
  }
  const sql = neon(c.env.DATABASE_URL);
  const rows = await sql.query(productsSQL, [maxPrice(c.req.query("max_price"))]);
  return c.json({ via: "neon() over HTTP", products: rows });
});

app.onError((err, c) => c.json({ error: err.message }, 500));

export default app;
