// The Neon driver's Pool over edgepool's WebSocket transport (plain ws on loopback, pipelined
// startup + cleartext password + first query), sharing the upstream budget with HTTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import ws from 'ws';
import { Pool, neon, neonConfig } from '@neondatabase/serverless';
import { startHarness } from './harness.js';

let h;
let pool;
let sql;

before(async () => {
  h = await startHarness(['-pool-size', '2', '-query-wait', '2s']);
  neonConfig.webSocketConstructor = ws;
  neonConfig.useSecureWebSocket = false; // loopback; in production wss:// carries TLS
  neonConfig.pipelineConnect = 'password';
  neonConfig.wsProxy = () => `${h.http}/v2`;
  neonConfig.fetchEndpoint = `http://${h.http}/sql`;
  pool = new Pool({ connectionString: h.url, max: 4 });
  sql = neon(h.url);
  await sql`create table accounts (id int primary key, owner text, balance int)`;
});

after(async () => {
  await pool?.end();
  await h?.stop();
});

test('BEGIN … COMMIT with prepared parameters through transaction pooling', async () => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query({ name: 'open-account', text: 'insert into accounts values ($1, $2, $3)', values: [1, 'ada', 100] });
    await client.query({ name: 'open-account', text: 'insert into accounts values ($1, $2, $3)', values: [2, 'bob', 50] });
    const moved = await client.query('update accounts set balance = balance + $1 where id = $2 returning balance', [25, 2]);
    assert.deepEqual(moved.rows, [{ balance: 75 }]);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  // Committed data is visible to other transports.
  assert.deepEqual(await sql`select id, owner, balance from accounts order by id`,
    [{ id: 1, owner: 'ada', balance: 100 }, { id: 2, owner: 'bob', balance: 75 }]);
});

test('ROLLBACK discards the transaction', async () => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('insert into accounts values ($1, $2, $3)', [3, 'eve', 1]);
    await client.query('ROLLBACK');
    const { rows } = await client.query('select count(*)::int as n from accounts where id = $1', [3]);
    assert.deepEqual(rows, [{ n: 0 }]);
  } finally {
    client.release();
  }
});

test('errors carry their SQLSTATE and the session stays usable', async () => {
  await assert.rejects(pool.query('insert into accounts values ($1, $2, $3)', [1, 'dup', 0]), (err) => err.code === '23505');
  const { rows } = await pool.query('select $1::text as ok', ['yes']);
  assert.deepEqual(rows, [{ ok: 'yes' }]);
});

test('wrong key is refused', async () => {
  const bad = new Pool({ connectionString: `postgres://${h.user}:ep_wrong@localhost/${h.database}`, max: 1 });
  try {
    await assert.rejects(bad.query('select 1'), (err) => err.code === '28P01');
  } finally {
    await bad.end();
  }
});

test('WebSocket and HTTP share one upstream budget', async () => {
  // Two WebSocket clients inside transactions hold both upstream connections of the pool…
  const a = await pool.connect();
  const b = await pool.connect();
  try {
    await a.query('BEGIN');
    await a.query('select 1');
    await b.query('BEGIN');
    await b.query('select 1');
    // …so an HTTP request waits out the query-wait timeout and gets a clean 53300 error.
    await assert.rejects(sql`select 1`, (err) => err.code === '53300');
    await a.query('COMMIT');
    // One transaction ended: HTTP gets that connection.
    assert.deepEqual(await sql`select ${5}::int as five`, [{ five: 5 }]);
    await b.query('COMMIT');
  } finally {
    a.release();
    b.release();
  }
});

test('metrics count WebSocket sessions', async () => {
  const text = await (await fetch(`http://${h.admin}/metrics`)).text();
  assert.match(text, /edgepool_websocket_sessions_total [1-9]/);
});
