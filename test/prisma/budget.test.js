// Interactive transactions hold an upstream connection from the pool's shared budget for their
// whole life: with every connection held, a new transaction waits at most its maxWait and is then
// refused with P2028, and it starts as soon as a connection comes back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, errorOf, eventually, reference } from './env.js';

const skip = reference && 'the reference executor has its own connection pool, not the pool budget';
const POOL = 2;
let s;
let prisma;

before(async () => {
  if (skip) return;
  s = await startStack(['-pool-size', String(POOL)]);
  prisma = s.client();
});

after(async () => {
  await s?.stop();
});

test('transactions beyond the pool wait maxWait, then P2028; they start once a connection is free', { skip }, async () => {
  // Hold every upstream connection in an open interactive transaction until released.
  let release;
  const released = new Promise((r) => { release = r; });
  let started = 0;
  const holders = Array.from({ length: POOL }, () => prisma.$transaction(async (tx) => {
    await tx.$executeRaw`select 1`;
    started++;
    await released;
    return tx.label.count();
  }, { timeout: 30_000, maxWait: 10_000 }));
  await eventually(() => assert.equal(started, POOL));
  const [{ n }] = await s.sql("select count(*)::int as n from pg_stat_activity where state = 'idle in transaction'");
  assert.equal(n, POOL, 'each transaction holds one upstream connection');

  const t0 = Date.now();
  const refused = await errorOf(() => prisma.$transaction(async (tx) => tx.label.count(), { maxWait: 300, timeout: 5_000 }));
  assert.equal(refused.code, 'P2028', refused.message);
  assert.ok(Date.now() - t0 >= 300, 'waited its maxWait');

  // A waiting transaction starts when a holder commits.
  const waiting = prisma.$transaction(async (tx) => tx.label.count(), { maxWait: 10_000, timeout: 5_000 });
  release();
  assert.deepEqual(await Promise.all(holders), Array(POOL).fill(0));
  assert.equal(await waiting, 0);
});
