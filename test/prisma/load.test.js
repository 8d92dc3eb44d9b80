// Load: 50 concurrent Prisma clients (50 PrismaClient instances, each its own connection-info,
// keep-alive sockets and compiler) doing findUnique through accelerateUrl for 10 s, every answer
// checked, 0 errors allowed. Req/s is printed for information; the benchmark is `make bench`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './env.js';

const CLIENTS = 50;
const SECONDS = Number(process.env.PRISMA_LOAD_SECONDS ?? 10);
let s;

before(async () => {
  s = await startStack(['-pool-size', '5']);
  await s.sql(`insert into ep_accounts (handle, "publicId", visits, "updatedAt")
    select 'load-' || i, 'pid-' || i, i, now() from generate_series(1, 1000) i`);
});

after(async () => {
  await s?.stop();
});

test(`${CLIENTS} concurrent clients, findUnique for ${SECONDS} s, no errors`, async (t) => {
  const clients = Array.from({ length: CLIENTS }, () => s.client());
  const deadline = Date.now() + SECONDS * 1000;
  const errors = [];
  let done = 0;
  let wrong = 0;
  await Promise.all(clients.map(async (prisma, c) => {
    for (let i = 0; Date.now() < deadline; i++) {
      const n = ((c * 7919 + i) % 1000) + 1;
      try {
        const a = await prisma.account.findUnique({ where: { handle: `load-${n}` }, select: { handle: true, visits: true } });
        if (a?.visits !== BigInt(n)) wrong++;
        done++;
      } catch (e) {
        errors.push(e);
      }
    }
  }));
  t.diagnostic(`${done} findUnique in ${SECONDS} s: ${(done / SECONDS).toFixed(0)} req/s, ${errors.length} errors`);
  assert.equal(errors.length, 0, errors.slice(0, 3).map((e) => `${e.code ?? ''} ${e.message}`).join('\n'));
  assert.equal(wrong, 0, 'every answer is the row asked for');
  assert.ok(done >= CLIENTS, `every client got answers (${done})`);
});
