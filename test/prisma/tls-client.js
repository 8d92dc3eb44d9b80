// Child process of https.test.js: a Prisma 7 app configured only by its environment, as a
// deployed app is. ACCELERATE_URL is prisma://localhost:<port>/?api_key=<key> (always https);
// NODE_EXTRA_CA_CERTS (read by node at start) decides whether the pool's CA is trusted.
// Prints one JSON line: { ok, results } or { ok: false, error }.
import { withAccelerate } from '@prisma/extension-accelerate';
import { PrismaClient } from './generated/client.ts';

const url = new URL(process.env.ACCELERATE_URL);
// $accelerate.invalidate goes to Prisma's cloud unless the URL is prisma+postgres://localhost;
// a custom fetch sends it to the pool instead (the documented workaround, docs/migrating-from-accelerate.md).
const toPool = (input, init) => fetch(String(input).replace('https://accelerate.prisma-data.net', `https://${url.host}`), init);
const prisma = new PrismaClient({ accelerateUrl: process.env.ACCELERATE_URL }).$extends(withAccelerate({ fetch: toPool }));

const out = {};
try {
  const a = await prisma.account.create({ data: { handle: 'tls', visits: 9007199254740993n, projects: { create: { name: 'p', budget: '3.14' } } }, include: { projects: true } });
  out.created = { handle: a.handle, visits: String(a.visits), budget: a.projects[0].budget.toString() };
  const found = await Promise.all([a.id, a.id + 99n].map((id) => prisma.account.findUnique({ where: { id }, select: { handle: true } })));
  out.compacted = found;
  out.itx = await prisma.$transaction(async (tx) => {
    await tx.label.create({ data: { name: 'tls-itx' } });
    return tx.label.count();
  });
  try {
    await prisma.account.create({ data: { handle: 'tls' } });
  } catch (e) {
    out.duplicate = e.code;
  }
  const q = () => prisma.label.findUnique({ where: { name: 'tls-itx' }, cacheStrategy: { ttl: 600, tags: ['tls'] } }).withAccelerateInfo();
  out.cache = [(await q()).info.cacheStatus, (await q()).info.cacheStatus];
  await prisma.$accelerate.invalidate({ tags: ['tls'] });
  out.cache.push((await q()).info.cacheStatus);
  console.log(JSON.stringify({ ok: true, results: out }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, results: out, error: { name: e.constructor?.name, code: e.code, message: String(e.message), cause: String(e.cause?.cause ?? e.cause ?? '') } }));
} finally {
  await prisma.$disconnect();
}
