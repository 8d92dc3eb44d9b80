// neon() over HTTP against edgepool's POST /sql, with the real @neondatabase/serverless driver.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { neon, neonConfig, NeonDbError } from '@neondatabase/serverless';
import { startHarness } from './harness.js';

let h;
let sql;

before(async () => {
  h = await startHarness(['-pool-size', '5']);
  neonConfig.fetchEndpoint = `http://${h.http}/sql`;
  sql = neon(h.url);
  await sql`create table items (id int primary key, name text, ok bool, meta jsonb, at timestamptz,
    price numeric(10,2), blob bytea, tags text[], scores int[], note text)`;
});

after(async () => {
  await h?.stop();
});

test('tagged-template query returns typed rows', async () => {
  const at = new Date('2024-05-06T07:08:09.123Z');
  const inserted = await sql`insert into items values (${1}, ${'widget'}, ${true}, ${{ color: 'red', sizes: [1, 2] }},
    ${at}, ${'19.99'}, ${Buffer.from([0xde, 0xad, 0xbe, 0xef])}, ${['a', 'b,c', 'd"e']}, ${[3, 1, 2]}, ${null})
    returning id`;
  assert.deepEqual(inserted, [{ id: 1 }]);

  const rows = await sql`select * from items where id = ${1}`;
  assert.equal(rows.length, 1);
  const r = rows[0];
  assert.equal(r.id, 1);
  assert.equal(r.name, 'widget');
  assert.equal(r.ok, true);
  assert.deepEqual(r.meta, { color: 'red', sizes: [1, 2] });
  assert.ok(r.at instanceof Date, 'timestamptz parses to a Date');
  assert.equal(r.at.toISOString(), at.toISOString());
  assert.equal(r.price, '19.99'); // numeric stays a string, as in node-postgres
  assert.ok(Buffer.isBuffer(r.blob));
  assert.deepEqual([...r.blob], [0xde, 0xad, 0xbe, 0xef]);
  assert.deepEqual(r.tags, ['a', 'b,c', 'd"e']);
  assert.deepEqual(r.scores, [3, 1, 2]);
  assert.equal(r.note, null);
});

test('arrayMode and fullResults', async () => {
  const q = neon(h.url, { arrayMode: true, fullResults: true });
  const res = await q`select ${7}::int as seven, 'x' as ex`;
  assert.deepEqual(res.rows, [[7, 'x']]);
  assert.equal(res.command, 'SELECT');
  assert.equal(res.rowCount, 1);
  assert.deepEqual(res.fields.map((f) => [f.name, f.dataTypeID]), [['seven', 23], ['ex', 25]]);
});

test('transaction commits atomically', async () => {
  const [a, b, count] = await sql.transaction([
    sql`insert into items (id, name) values (${10}, ${'t1'}) returning id`,
    sql`insert into items (id, name) values (${11}, ${'t2'}) returning id`,
    sql`select count(*)::int as n from items where id in (10, 11)`,
  ], { isolationLevel: 'Serializable' });
  assert.deepEqual(a, [{ id: 10 }]);
  assert.deepEqual(b, [{ id: 11 }]);
  assert.deepEqual(count, [{ n: 2 }]);
});

test('transaction rolls back on an error', async () => {
  await assert.rejects(
    sql.transaction([
      sql`insert into items (id, name) values (${20}, ${'kept?'})`,
      sql`insert into items (id, name) values (${1}, ${'duplicate'})`,
    ]),
    (err) => err instanceof NeonDbError && err.code === '23505',
  );
  const rows = await sql`select id from items where id = ${20}`;
  assert.deepEqual(rows, [], 'the first insert was rolled back');
});

test('read-only transaction refuses writes', async () => {
  await assert.rejects(
    sql.transaction([sql`insert into items (id) values (${30})`], { readOnly: true }),
    (err) => err.code === '25006',
  );
});

test('SQL error surfaces with its code and position', async () => {
  await assert.rejects(sql`select * from no_such_table`, (err) => {
    assert.ok(err instanceof NeonDbError);
    assert.equal(err.code, '42P01');
    assert.equal(err.position, '15');
    assert.match(err.message, /no_such_table/);
    return true;
  });
});

test('wrong key fails with a clear message', async () => {
  const bad = neon(`postgres://${h.user}:ep_not_the_key@localhost/${h.database}`);
  await assert.rejects(bad`select 1`, (err) => {
    assert.match(err.message, /401/);
    assert.match(err.message, /authentication failed: invalid API key/);
    assert.ok(!err.message.includes(h.key));
    return true;
  });
});

test('authToken is sent as a bearer key', async () => {
  const viaToken = neon(`postgres://${h.user}@localhost/${h.database}`, { authToken: h.key });
  assert.deepEqual(await viaToken`select ${'ok'}::text as status`, [{ status: 'ok' }]);
  const wrongToken = neon(`postgres://${h.user}@localhost/${h.database}`, { authToken: 'ep_wrong' });
  await assert.rejects(wrongToken`select 1`, /HTTP status 401/);
});

test('500 concurrent requests on 5 upstream connections succeed or time out cleanly', async (t) => {
  const results = await Promise.allSettled(
    Array.from({ length: 500 }, (_, i) => sql`select ${i}::int as i, pg_sleep(0.002)::text as s`),
  );
  let ok = 0;
  let timedOut = 0;
  let capped = 0;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') {
      assert.equal(r.value[0].i, i);
      ok++;
    } else if (/HTTP status 429/.test(r.reason.message)) {
      // More than http.maxInFlightPerKey (256) of them in flight at once, which a loaded
      // machine allows: refused as documented, with SQLSTATE 53300 in the body.
      assert.match(r.reason.message, /"code":"53300"/, `request ${i}: ${r.reason.message}`);
      capped++;
    } else {
      assert.equal(r.reason.code, '53300', `request ${i}: ${r.reason.message}`);
      timedOut++;
    }
  });
  t.diagnostic(`${ok} succeeded, ${timedOut} timed out (53300), ${capped} over the per-key cap (429)`);
  assert.equal(ok + timedOut + capped, 500);
  assert.ok(ok > 0);
});

test('metrics count HTTP requests', async () => {
  const text = await (await fetch(`http://${h.admin}/metrics`)).text();
  assert.match(text, /edgepool_http_requests_total\{code="200",kind="single"\} \d+/);
  assert.match(text, /edgepool_http_requests_total\{code="401",kind="single"\} 2/);
  assert.match(text, /edgepool_http_request_duration_seconds_bucket/);
});
