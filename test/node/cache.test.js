// The opt-in HTTP query cache, over plain fetch (the Neon driver cannot add request headers).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness } from './harness.js';

let h;

before(async () => {
  h = await startHarness(['-pool-size', '2']);
  await query('create table counter (n int)');
  await query('insert into counter values (1)');
});

after(async () => {
  await h?.stop();
});

async function query(text, params = [], headers = {}) {
  const res = await fetch(`http://${h.http}/sql`, {
    method: 'POST',
    headers: { 'Neon-Connection-String': h.url, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ query: text, params }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return { status: res.headers.get('edgepool-cache'), rows: body.rows };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('hit within the TTL, miss after it', async () => {
  const cached = { 'Cache-Control': 'max-age=3' };
  const first = await query('select n from counter where n > $1', [0], cached);
  assert.equal(first.status, 'miss');
  assert.deepEqual(first.rows, [{ n: 1 }]);

  await query('update counter set n = 2');
  const second = await query('select n from counter where n > $1', [0], cached);
  assert.equal(second.status, 'hit');
  assert.deepEqual(second.rows, [{ n: 1 }], 'served from the cache');

  await sleep(3100);
  const third = await query('select n from counter where n > $1', [0], cached);
  assert.equal(third.status, 'miss');
  assert.deepEqual(third.rows, [{ n: 2 }]);
});

test('stale-while-revalidate serves stale, then the refreshed result', async () => {
  const swr = { 'Cache-Control': 'max-age=1, stale-while-revalidate=30' };
  await query('select n, 1 as swr from counter', [], swr);
  await query('update counter set n = 3');
  await sleep(1100);
  const stale = await query('select n, 1 as swr from counter', [], swr);
  assert.equal(stale.status, 'stale');
  assert.deepEqual(stale.rows, [{ n: 2, swr: 1 }]);
  // The background refresh replaces the entry; a request that accepts its age sees it as a hit.
  const deadline = Date.now() + 10_000;
  let fresh;
  do {
    fresh = await query('select n, 1 as swr from counter', [], { 'Cache-Control': 'max-age=60' });
    if (fresh.rows[0].n === 3) break;
    await sleep(20);
  } while (Date.now() < deadline);
  assert.equal(fresh.status, 'hit');
  assert.deepEqual(fresh.rows, [{ n: 3, swr: 1 }]);
});

test('writes are never cached', async () => {
  const cached = { 'Cache-Control': 'max-age=60' };
  for (let i = 0; i < 2; i++) {
    const w = await query('insert into counter values ($1) returning n', [100 + i], cached);
    assert.equal(w.status, 'bypass');
    assert.deepEqual(w.rows, [{ n: 100 + i }]);
  }
  const { rows } = await query('select count(*)::int as c from counter where n >= 100');
  assert.deepEqual(rows, [{ c: 2 }]);
});

test('metrics count cache results', async () => {
  const text = await (await fetch(`http://${h.admin}/metrics`)).text();
  assert.match(text, /edgepool_http_cache_requests_total\{result="hit"\} [1-9]/);
  assert.match(text, /edgepool_http_cache_requests_total\{result="miss"\} [1-9]/);
  assert.match(text, /edgepool_http_cache_requests_total\{result="bypass"\} [1-9]/);
});
