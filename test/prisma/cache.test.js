// The query cache through @prisma/extension-accelerate: `cacheStrategy` (ttl, swr, tags),
// `accelerate-cache-status` as `.withAccelerateInfo()` reports it, and `$accelerate.invalidate`,
// which goes to the pool itself because the URL is prisma+postgres://localhost.
// Data is changed behind the cache's back with direct SQL, so a cached answer is recognisable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, eventually, reference } from './env.js';

const skip = reference && 'the reference executor has no cache and no /invalidate';
let s;
let xp;

before(async () => {
  if (skip) return;
  s = await startStack();
  xp = s.accelerated();
  await s.sql("insert into ep_labels (name, color) values ('cache', 'v1'), ('other', 'v1'), ('swr', 'v1')");
});

after(async () => {
  await s?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const recolor = (name, color) => s.sql('update ep_labels set color = $2 where name = $1', [name, color]);
const color = async (name, cacheStrategy) => {
  const { data, info } = await xp.label.findUnique({ where: { name }, select: { color: true }, cacheStrategy }).withAccelerateInfo();
  return [data.color, info.cacheStatus];
};

test('no cacheStrategy: never cached', { skip }, async () => {
  const { info } = await xp.label.findMany({ where: { name: 'cache' } }).withAccelerateInfo();
  assert.equal(info.cacheStatus, 'none');
  await recolor('cache', 'v2');
  const again = await xp.label.findMany({ where: { name: 'cache' } }).withAccelerateInfo();
  assert.equal(again.info.cacheStatus, 'none');
  assert.equal(again.data[0].color, 'v2');
});

test('ttl: a hit within the TTL, a miss after it', { skip }, async () => {
  const ttl = { ttl: 4 }; // long enough for the next calls on a loaded machine
  await recolor('cache', 'v2');
  assert.deepEqual(await color('cache', ttl), ['v2', 'miss']);
  const storedAt = Date.now();
  await recolor('cache', 'v3');
  assert.deepEqual(await color('cache', ttl), ['v2', 'ttl'], 'served from the cache');
  // A different query (other parameters) is a different entry.
  assert.deepEqual(await color('other', ttl), ['v1', 'miss']);
  // Wait out the 4 s TTL set above, then the entry must not be served.
  await sleep(Math.max(0, storedAt + 4_000 - Date.now()) + 100);
  assert.deepEqual(await color('cache', ttl), ['v3', 'miss']);
  assert.deepEqual(await color('cache', ttl), ['v3', 'ttl']);
});

test('swr: serves the stale entry, then the refreshed one', { skip }, async () => {
  const swr = { ttl: 1, swr: 60 };
  assert.deepEqual(await color('swr', swr), ['v1', 'miss']);
  const storedAt = Date.now();
  await recolor('swr', 'v2');
  // Wait out the 1 s TTL set above: the entry is stale but within its 60 s stale-while-revalidate.
  await sleep(Math.max(0, storedAt + 1_000 - Date.now()) + 100);
  assert.deepEqual(await color('swr', swr), ['v1', 'swr'], 'stale answer, refresh started');
  // The background refresh replaces the entry; a later request gets the new value from the cache.
  const [fresh, status] = await eventually(async () => {
    const got = await color('swr', { ttl: 60, swr: 60 });
    assert.equal(got[0], 'v2');
    return got;
  });
  assert.equal(fresh, 'v2');
  assert.ok(['ttl', 'miss'].includes(status), status);
});

test('$accelerate.invalidate({ tags }) empties those entries and only those', { skip }, async () => {
  await s.sql("insert into ep_labels (name, color) values ('tag-a', 'a1'), ('tag-b', 'b1')");
  const a = { ttl: 600, tags: ['labels_a', 'shared'] };
  const b = { ttl: 600, tags: ['labels_b'] };
  assert.deepEqual(await color('tag-a', a), ['a1', 'miss']);
  assert.deepEqual(await color('tag-b', b), ['b1', 'miss']);
  await recolor('tag-a', 'a2');
  await recolor('tag-b', 'b2');
  assert.deepEqual(await color('tag-a', a), ['a1', 'ttl']);
  await xp.$accelerate.invalidate({ tags: ['shared'] });
  assert.deepEqual(await color('tag-a', a), ['a2', 'miss'], 'invalidated by its second tag');
  assert.deepEqual(await color('tag-b', b), ['b1', 'ttl'], 'another tag stays cached');
  await xp.$accelerate.invalidateAll();
  assert.deepEqual(await color('tag-b', b), ['b2', 'miss']);
});

test('writes are never cached, even with a cacheStrategy', { skip }, async () => {
  await s.sql("insert into ep_accounts (handle, \"publicId\", \"updatedAt\") values ('writer', 'w', now())");
  for (let i = 0; i < 3; i++) {
    // The extension forwards cacheStrategy on any operation, as cache-control: max-age=60.
    const data = await xp.account.updateMany({ where: { handle: 'writer' }, data: { visits: { increment: 1n } }, cacheStrategy: { ttl: 60 } });
    assert.deepEqual(data, { count: 1 });
  }
  const [{ visits }] = await s.sql("select visits::int from ep_accounts where handle = 'writer'");
  assert.equal(visits, 3);
});

test('raw queries and queries in a transaction are not served from the cache', { skip }, async () => {
  await recolor('cache', 'r1');
  assert.deepEqual(await color('cache', { ttl: 600 }), ['r1', 'miss']);
  await recolor('cache', 'r2');
  const [raw] = await xp.$queryRaw`select color from ep_labels where name = 'cache'`;
  assert.equal(raw.color, 'r2');
  const inTx = await xp.$transaction(async (tx) => tx.label.findUnique({ where: { name: 'cache' }, select: { color: true }, cacheStrategy: { ttl: 600 } }));
  assert.equal(inTx.color, 'r2', 'a transaction reads the database');
});
