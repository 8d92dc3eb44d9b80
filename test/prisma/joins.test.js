// The relationJoins preview: with relationLoadStrategy "join" Prisma 7 loads relations in one
// statement (LATERAL subqueries aggregated with JSONB_AGG) and maps JSON back into typed values.
// Every query here must give exactly what the default strategy (one query per relation) gives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, Prisma } from './env.js';
import { PrismaClient as JoinsClient } from './generated-joins/client.ts';

let s;
let prisma;
let joins;

before(async () => {
  s = await startStack();
  prisma = s.client();
  joins = new JoinsClient({ accelerateUrl: s.accelerateUrl });
  s.clients.push(joins);
  for (const [handle, n] of [['j-ada', 3], ['j-bob', 0], ['j-cy', 1]]) {
    await prisma.account.create({
      data: {
        handle, credit: new Prisma.Decimal(`${n}.125`), visits: BigInt(n) * 9007199254740993n, avatar: Buffer.from([n, 255]),
        settings: { n, list: [n, 'x'] }, badge: n ? { create: { title: `badge-${n}` } } : undefined,
        projects: {
          create: Array.from({ length: n }, (_, i) => ({
            name: `${handle}-p${i}`, budget: `${i}.5`, stars: i, status: i % 2 ? 'ACTIVE' : 'DRAFT',
            tasks: { create: Array.from({ length: i + 1 }, (_, k) => ({ title: `t${k}`, priority: k, done: k % 2 === 0, dueAt: new Date(Date.UTC(2031, 0, k + 1)), tags: [`k${k}`] })) },
            labels: { connectOrCreate: [{ where: { name: `l${i}` }, create: { name: `l${i}` } }] },
          })),
        },
      },
    });
  }
});

after(async () => {
  await s?.stop();
});

// Decimals and Dates compare by value; bigint and bytes keep their types through JSON.stringify.
const plain = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x)));

const queries = {
  'include nested with where, orderBy, take': (c, strategy) => c.account.findMany({
    relationLoadStrategy: strategy, where: { handle: { startsWith: 'j-' } }, orderBy: { handle: 'asc' },
    include: { badge: true, projects: { where: { stars: { gte: 0 } }, orderBy: { name: 'desc' }, take: 2, include: { tasks: { orderBy: { priority: 'desc' } }, labels: true } } },
  }),
  'nested select with _count and filtered relation count': (c, strategy) => c.project.findMany({
    relationLoadStrategy: strategy, where: { owner: { handle: { startsWith: 'j-' } } }, orderBy: { name: 'asc' },
    select: { name: true, budget: true, owner: { select: { handle: true, credit: true, visits: true, avatar: true, settings: true } },
      _count: { select: { tasks: { where: { done: true } }, labels: true } }, tasks: { select: { title: true, dueAt: true, tags: true }, orderBy: { title: 'asc' } } },
  }),
  'findUnique with m-n and optional 1-1 from both sides': (c, strategy) => Promise.all([
    c.label.findUnique({ relationLoadStrategy: strategy, where: { name: 'l0' }, include: { projects: { orderBy: { name: 'asc' }, select: { name: true, owner: { select: { handle: true, badge: true } } } } } }),
    c.badge.findMany({ relationLoadStrategy: strategy, orderBy: { title: 'asc' }, include: { account: { include: { _count: { select: { projects: true } } } } } }),
  ]),
  'findFirst with a relation that is empty or missing': (c, strategy) => c.account.findFirst({
    relationLoadStrategy: strategy, where: { handle: 'j-bob' }, include: { projects: { include: { tasks: true } }, badge: true },
  }),
};

for (const [name, q] of Object.entries(queries)) {
  test(`relationLoadStrategy join = query: ${name}`, async () => {
    const viaQuery = await q(joins, 'query');
    const viaJoin = await q(joins, 'join');
    assert.deepEqual(plain(viaJoin), plain(viaQuery));
    // And the same as the client generated without the preview (no relationLoadStrategy).
    assert.deepEqual(plain(await q(prisma, undefined)), plain(viaQuery));
  });
}

test('joined values keep their types (Decimal, BigInt, Bytes, DateTime, Json)', async () => {
  const [p] = await joins.project.findMany({
    relationLoadStrategy: 'join', where: { name: 'j-ada-p2' },
    select: { owner: { select: { credit: true, visits: true, avatar: true, joinedAt: true, settings: true } }, tasks: { select: { dueAt: true }, orderBy: { title: 'asc' }, take: 1 } },
  });
  assert.ok(Prisma.Decimal.isDecimal(p.owner.credit) && p.owner.credit.equals('3.125'));
  assert.equal(p.owner.visits, 27021597764222979n);
  assert.deepEqual([...p.owner.avatar], [3, 255]);
  assert.ok(p.owner.joinedAt instanceof Date);
  assert.deepEqual(p.owner.settings, { n: 3, list: [3, 'x'] });
  assert.equal(p.tasks[0].dueAt.toISOString(), '2031-01-01T00:00:00.000Z');
});
