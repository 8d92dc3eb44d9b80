// Batch and interactive transactions through `accelerateUrl`: commit, roll back, nest
// (savepoints), isolation levels, concurrent queries in one transaction, and the server-enforced
// timeout, which must roll back and release the upstream connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, errorOf, eventually, Prisma } from './env.js';

let s;
let prisma;

before(async () => {
  s = await startStack();
  prisma = s.client();
});

after(async () => {
  await s?.stop();
});

const count = async (handlePrefix) =>
  (await s.sql('select count(*)::int as n from ep_accounts where handle like $1', [`${handlePrefix}%`]))[0].n;

test('batch transaction commits every element and returns their results in order', async () => {
  const [a, b, n, list] = await prisma.$transaction([
    prisma.account.create({ data: { handle: 'bt-1' } }),
    prisma.account.create({ data: { handle: 'bt-2', visits: 2n } }),
    prisma.account.count({ where: { handle: { startsWith: 'bt-' } } }),
    prisma.account.findMany({ where: { handle: { startsWith: 'bt-' } }, orderBy: { handle: 'desc' }, select: { handle: true, visits: true } }),
  ], { isolationLevel: 'Serializable' });
  assert.equal(a.handle, 'bt-1');
  assert.equal(b.visits, 2n);
  assert.equal(n, 2, 'the count sees the writes before it');
  assert.deepEqual(list, [{ handle: 'bt-2', visits: 2n }, { handle: 'bt-1', visits: 0n }]);
  assert.equal(await count('bt-'), 2);
});

test('batch transaction rolls back entirely when one element fails', async () => {
  const err = await errorOf(() => prisma.$transaction([
    prisma.account.create({ data: { handle: 'bt-rb' } }),
    prisma.account.update({ where: { handle: 'bt-1' }, data: { visits: { increment: 100n } } }),
    prisma.account.create({ data: { handle: 'bt-1' } }), // unique violation
  ]));
  assert.ok(err instanceof Prisma.PrismaClientKnownRequestError);
  assert.equal(err.code, 'P2002');
  assert.equal(err.batchRequestIdx, 2);
  assert.equal(await count('bt-rb'), 0);
  const [{ visits }] = await s.sql("select visits::int from ep_accounts where handle = 'bt-1'");
  assert.equal(visits, 0);
});

test('interactive transaction commits; its writes are invisible outside until then', async () => {
  let seenOutside;
  const result = await prisma.$transaction(async (tx) => {
    const a = await tx.account.create({ data: { handle: 'itx-1', credit: '5' } });
    const p = await tx.project.create({ data: { name: 'itx', budget: 1, ownerId: a.id } });
    const inside = await tx.account.findUnique({ where: { handle: 'itx-1' }, include: { projects: true } });
    assert.equal(inside.projects[0].id, p.id, 'reads its own writes');
    seenOutside = await count('itx-1');
    return tx.account.update({ where: { id: a.id }, data: { credit: { decrement: new Prisma.Decimal('0.5') } } });
  }, { isolationLevel: 'RepeatableRead', timeout: 20_000, maxWait: 5_000 });
  assert.equal(seenOutside, 0);
  assert.ok(result.credit.equals('4.5'));
  assert.equal(await count('itx-1'), 1);
});

test('interactive transaction rolls back when the callback throws', async () => {
  const boom = new Error('boom');
  const err = await errorOf(() => prisma.$transaction(async (tx) => {
    await tx.account.create({ data: { handle: 'itx-rb' } });
    await tx.$executeRaw`update ep_accounts set visits = visits + 1 where handle = 'itx-1'`;
    throw boom;
  }));
  assert.equal(err, boom);
  assert.equal(await count('itx-rb'), 0);
  const [{ visits }] = await s.sql("select visits::int from ep_accounts where handle = 'itx-1'");
  assert.equal(visits, 0);
});

test('a failing query inside an interactive transaction surfaces its code and the transaction rolls back', async () => {
  const err = await errorOf(() => prisma.$transaction(async (tx) => {
    await tx.account.create({ data: { handle: 'itx-err' } });
    await tx.project.create({ data: { name: 'orphan', budget: 1, ownerId: 999_999n } });
  }));
  assert.equal(err.code, 'P2003');
  assert.equal(await count('itx-err'), 0);
});

test('isolation level and concurrent queries in one interactive transaction', async () => {
  await prisma.$transaction(async (tx) => {
    const [{ level }] = await tx.$queryRaw`select current_setting('transaction_isolation') as level`;
    assert.equal(level, 'serializable');
    // Issued together: the server serializes them on the transaction's one connection.
    const made = await Promise.all(Array.from({ length: 8 }, (_, i) => tx.account.create({ data: { handle: `conc-${i}` } })));
    // Parallel findUniques inside the transaction are compacted into one query.
    const found = await Promise.all(made.map((a) => tx.account.findUnique({ where: { id: a.id }, select: { handle: true } })));
    assert.deepEqual(found.map((f) => f.handle), made.map((a) => a.handle));
    const pids = await Promise.all([1, 2, 3].map(() => tx.$queryRaw`select pg_backend_pid() as pid`));
    assert.equal(new Set(pids.map(([r]) => r.pid)).size, 1, 'one upstream connection');
  }, { isolationLevel: 'Serializable' });
  assert.equal(await count('conc-'), 8);
});

test('nested transactions: an inner rollback undoes only the inner writes', async () => {
  const result = await prisma.$transaction(async (tx) => {
    await tx.account.create({ data: { handle: 'nest-outer' } });
    const inner = await tx.$transaction(async (tx2) => {
      await tx2.account.create({ data: { handle: 'nest-inner-ok' } });
      return tx2.account.count({ where: { handle: { startsWith: 'nest-' } } });
    });
    const failed = await errorOf(() => tx.$transaction(async (tx2) => {
      await tx2.account.create({ data: { handle: 'nest-inner-rb' } });
      throw new Error('inner');
    }));
    assert.equal(failed.message, 'inner');
    return { inner, after: await tx.account.count({ where: { handle: { startsWith: 'nest-' } } }) };
  });
  assert.deepEqual(result, { inner: 2, after: 2 });
  const rows = await s.sql("select handle from ep_accounts where handle like 'nest-%' order by handle");
  assert.deepEqual(rows.map((r) => r.handle), ['nest-inner-ok', 'nest-outer']);
});

test('an expired interactive transaction is rolled back, releases its locks, and answers P2028', async () => {
  await prisma.account.create({ data: { handle: 'tmo', visits: 1n } });
  const timeout = 1_000;
  const started = Date.now();
  const err = await errorOf(() => prisma.$transaction(async (tx) => {
    await tx.account.create({ data: { handle: 'tmo-written' } });
    await tx.account.update({ where: { handle: 'tmo' }, data: { visits: 2n } }); // row lock held by the transaction
    // Wait until the server has rolled the transaction back: another connection can then take
    // the row lock (lock_timeout makes each attempt fail fast while the transaction holds it).
    await eventually(async () => {
      try {
        await s.sql("begin; set local lock_timeout = '50ms'; update ep_accounts set visits = 3 where handle = 'tmo'; commit");
      } catch (e) {
        await s.sql('rollback');
        throw e;
      }
    }, 30_000);
    return tx.account.count();
  }, { timeout }));
  assert.ok(Date.now() - started >= timeout, 'not before the timeout');
  assert.ok(err instanceof Prisma.PrismaClientKnownRequestError, String(err));
  assert.equal(err.code, 'P2028');
  assert.match(err.message, /expired transaction|timeout/i);
  assert.equal(await count('tmo-written'), 0, 'rolled back');
  const [{ visits }] = await s.sql("select visits::int from ep_accounts where handle = 'tmo'");
  assert.equal(visits, 3);
  const idle = await s.sql("select count(*)::int as n from pg_stat_activity where state = 'idle in transaction'");
  assert.equal(idle[0].n, 0, 'no upstream connection left in a transaction');
});

test('a query after the transaction timeout answers P2028 (client side of the timeout)', async () => {
  const err = await errorOf(() => prisma.$transaction(async (tx) => {
    // Sleep past the 300 ms timeout this transaction set; the next query must be refused.
    await new Promise((r) => setTimeout(r, 600));
    return tx.account.count();
  }, { timeout: 300 }));
  assert.equal(err.code, 'P2028');
  assert.equal(err.meta?.timeout, 300);
});
