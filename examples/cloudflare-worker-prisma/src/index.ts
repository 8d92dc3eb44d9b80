// The shop API of a Prisma Accelerate user, moved to edgepool by changing one URL.
//
// This is the usual Accelerate setup — Hono on Cloudflare Workers, Prisma 7 with `accelerateUrl`
// and `withAccelerate()` — unchanged except for ACCELERATE_URL, which now comes from the pool's
// app Secret (`prisma://<pool host>/?api_key=<key>`) instead of the Prisma console.
//
//   GET  /products?max_price=<cents>   findMany, cached by the pool for 60 s (tag "products")
//   GET  /products/:id                 findUnique, cached 60 s, stale-while-revalidate 60 s
//   POST /products {name, priceCents}  create in a transaction, then invalidate the "products" tag
//   DELETE /products/:id               delete (404 when missing), then invalidate the "products" tag
//   GET  /stats                        aggregate, never cached
// Each answer carries `cache`: the pool's accelerate-cache-status (miss, ttl, swr or none).
import { Hono } from "hono";
import { withAccelerate } from "@prisma/extension-accelerate";
import { PrismaClient } from "./generated/prisma/client";

type Bindings = { ACCELERATE_URL: string };

// `$accelerate.invalidate()` posts to Prisma's cloud (accelerate.prisma-data.net) unless the URL
// is prisma+postgres://localhost…; point it at the pool instead. Queries always go to the URL's host.
function poolFetch(accelerateUrl: string): typeof fetch {
  const pool = `https://${new URL(accelerateUrl).host}`;
  return (input, init) => fetch(String(input instanceof Request ? input.url : input).replace("https://accelerate.prisma-data.net", pool), init);
}

function newClient(url: string) {
  return new PrismaClient({ accelerateUrl: url }).$extends(withAccelerate({ fetch: poolFetch(url) }));
}

// One client per isolate (the URL comes from the request's env, so it is made on first use).
let cached: { url: string; client: ReturnType<typeof newClient> } | undefined;
function prismaFor(env: Bindings) {
  if (cached?.url !== env.ACCELERATE_URL) cached = { url: env.ACCELERATE_URL, client: newClient(env.ACCELERATE_URL) };
  return cached.client;
}

const app = new Hono<{ Bindings: Bindings }>();

app.get("/products", async (c) => {
  const maxPrice = Number(c.req.query("max_price") ?? "1000000");
  const { data, info } = await prismaFor(c.env)
    .product.findMany({
      where: { priceCents: { lte: Number.isFinite(maxPrice) ? maxPrice : 1000000 } },
      orderBy: { id: "asc" },
      cacheStrategy: { ttl: 60, tags: ["products"] },
    })
    .withAccelerateInfo();
  return c.json({ products: data, cache: info?.cacheStatus });
});

app.get("/products/:id{[0-9]+}", async (c) => {
  const { data, info } = await prismaFor(c.env)
    .product.findUnique({ where: { id: Number(c.req.param("id")) }, cacheStrategy: { ttl: 60, swr: 60, tags: ["products"] } })
    .withAccelerateInfo();
  if (!data) return c.json({ error: "not found" }, 404);
  return c.json({ product: data, cache: info?.cacheStatus });
});

app.post("/products", async (c) => {
  const body = await c.req.json<{ name?: string; priceCents?: number }>();
  if (typeof body.name !== "string" || !Number.isInteger(body.priceCents)) {
    return c.json({ error: "name (string) and priceCents (integer) are required" }, 400);
  }
  const prisma = prismaFor(c.env);
  const [product, count] = await prisma.$transaction([
    prisma.product.create({ data: { name: body.name, priceCents: body.priceCents! } }),
    prisma.product.count(),
  ]);
  await prisma.$accelerate.invalidate({ tags: ["products"] });
  return c.json({ product, count }, 201);
});

app.delete("/products/:id{[0-9]+}", async (c) => {
  const prisma = prismaFor(c.env);
  const product = await prisma.product.delete({ where: { id: Number(c.req.param("id")) } });
  await prisma.$accelerate.invalidate({ tags: ["products"] });
  return c.json({ product });
});

app.get("/stats", async (c) => {
  const stats = await prismaFor(c.env).product.aggregate({ _count: { _all: true }, _min: { priceCents: true }, _max: { priceCents: true }, _avg: { priceCents: true } });
  return c.json(stats);
});

// Prisma's errors carry their code: P2025 (record not found) is the client's 404.
app.onError((err, c) => {
  const code = (err as { code?: string }).code;
  return c.json({ error: err.message, code }, code === "P2025" ? 404 : 500);
});

export default app;
