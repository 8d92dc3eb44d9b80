// Prisma 7 CRUD, relations, aggregates and raw SQL through `accelerateUrl` (http on loopback),
// every result checked against what PostgreSQL holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, errorOf, Prisma } from './env.js';

let s;
let prisma;

before(async () => {
  s = await startStack();
  prisma = s.client();
});

after(async () => {
  await s?.stop();
});

const ids = (rows) => rows.map((r) => r.id);

test('create with nested creates, server-side defaults and generators', async () => {
  const a = await prisma.account.create({
    data: {
      handle: 'ada', plan: 'PRO', credit: new Prisma.Decimal('12.5'),
      projects: { create: [{ name: 'engine', budget: '1000.00', tasks: { create: [{ title: 'gears' }, { title: 'cards', priority: 2 }] } }] },
      badge: { create: { title: 'first' } },
    },
    include: { projects: { include: { tasks: { orderBy: { priority: 'asc' } } } }, badge: true },
  });
  assert.equal(typeof a.id, 'bigint');
  assert.equal(a.handle, 'ada');
  assert.equal(a.plan, 'PRO');
  assert.ok(Prisma.Decimal.isDecimal(a.credit) && a.credit.equals('12.5'));
  assert.equal(a.visits, 0n);
  // uuid(7), cuid(2), nanoid(12), ulid() and now() are evaluated by the server.
  assert.match(a.publicId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(a.joinedAt instanceof Date && Math.abs(a.joinedAt - Date.now()) < 60_000);
  assert.ok(a.updatedAt instanceof Date);
  const [p] = a.projects;
  assert.match(p.id, /^[a-z][a-z0-9]{23}$/, 'cuid v2');
  assert.match(p.slug, /^[A-Za-z0-9_-]{12}$/, 'nanoid(12)');
  assert.equal(p.ownerId, a.id);
  assert.deepEqual(p.tasks.map((t) => [t.title, t.priority, t.done]), [['gears', 0, false], ['cards', 2, false]]);
  for (const t of p.tasks) assert.match(t.id, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'ulid');
  assert.equal(a.badge.title, 'first');
  assert.equal(a.badge.accountId, a.id);

  const [row] = await s.sql('select handle, plan::text, credit::text, "publicId" from ep_accounts where id = $1', [a.id]);
  assert.deepEqual(row, { handle: 'ada', plan: 'PRO', credit: '12.500000', publicId: a.publicId });
  const [{ n }] = await s.sql('select count(*)::int as n from ep_tasks where "projectId" = $1', [p.id]);
  assert.equal(n, 2);
});

test('createMany and createManyAndReturn', async () => {
  const r = await prisma.label.createMany({ data: [{ name: 'red', color: 'r' }, { name: 'green' }, { name: 'red' }], skipDuplicates: true });
  assert.deepEqual(r, { count: 2 });
  const back = await prisma.label.createManyAndReturn({ data: [{ name: 'blue' }, { name: 'amber', color: 'a' }], select: { name: true, color: true } });
  assert.deepEqual(back, [{ name: 'blue', color: 'gray' }, { name: 'amber', color: 'a' }]);
  const rows = await s.sql('select name, color from ep_labels order by id');
  assert.deepEqual(rows.map((x) => x.name), ['red', 'green', 'blue', 'amber']);
});

test('a createMany with more bind values than one statement may have is split', async () => {
  // 17,000 rows x 2 columns = 34,000 values, above Prisma's PostgreSQL limit of 32,766 per
  // statement: the write must be split (by the client when the server advertises maxBindValues,
  // else by the server) and still be one all-or-nothing write. Prisma's plans take ~200 bytes per
  // bind value, so this is a 6.6 MB request: within the pool's default limit for Prisma requests.
  const data = Array.from({ length: 17_000 }, (_, i) => ({ name: `bulk-${i}`, color: `c${i % 10}` }));
  assert.deepEqual(await prisma.label.createMany({ data }), { count: 17_000 });
  const [{ n, colors }] = await s.sql("select count(*)::int as n, count(distinct color)::int as colors from ep_labels where name like 'bulk-%'");
  assert.deepEqual({ n, colors }, { n: 17_000, colors: 10 });
  const dup = await errorOf(() => prisma.label.createMany({ data: [...data.slice(0, 16_999).map((d) => ({ ...d, name: `${d.name}-again` })), { name: 'bulk-0' }] }));
  assert.equal(dup.code, 'P2002', 'the last chunk fails');
  assert.deepEqual(await s.sql("select count(*)::int as n from ep_labels where name like 'bulk-%-again'"), [{ n: 0 }], 'earlier chunks rolled back');
  assert.deepEqual(await prisma.label.deleteMany({ where: { name: { startsWith: 'bulk-' } } }), { count: 17_000 });
});

test('parallel findUnique calls are compacted and each gets its own row', async () => {
  const made = await Promise.all(['c1', 'c2', 'c3'].map((handle) => prisma.account.create({ data: { handle } })));
  const missing = made[2].id + 1000n;
  const got = await Promise.all([made[2].id, missing, made[0].id, made[1].id].map((id) => prisma.account.findUnique({ where: { id } })));
  assert.deepEqual(got.map((a) => a?.handle ?? null), ['c3', null, 'c1', 'c2']);
  // By another unique field, with a selection.
  const byHandle = await Promise.all(['c2', 'nobody', 'c1'].map((handle) => prisma.account.findUnique({ where: { handle }, select: { id: true, handle: true } })));
  assert.deepEqual(byHandle, [{ id: made[1].id, handle: 'c2' }, null, { id: made[0].id, handle: 'c1' }]);
  // OrThrow: the hits resolve, the miss raises P2025.
  const results = await Promise.allSettled([made[0].id, missing].map((id) => prisma.account.findUniqueOrThrow({ where: { id } })));
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[0].value.handle, 'c1');
  assert.equal(results[1].status, 'rejected');
  assert.equal(results[1].reason.code, 'P2025');
});

test('findMany: filters, ordering, pagination, cursor, distinct', async () => {
  const owner = await prisma.account.create({ data: { handle: 'fm' } });
  const names = ['alpha', 'Beta', 'gamma', 'delta', 'Epsilon', 'zeta'];
  for (const [i, name] of names.entries()) {
    await prisma.project.create({ data: { name, budget: `${(i + 1) * 10}.5`, stars: i % 3, status: i % 2 ? 'ACTIVE' : 'DRAFT', ownerId: owner.id } });
  }
  const base = { ownerId: owner.id };
  const insensitive = await prisma.project.findMany({ where: { ...base, name: { contains: 'E', mode: 'insensitive' }, status: 'ACTIVE' }, orderBy: { name: 'asc' }, select: { name: true } });
  assert.deepEqual(insensitive.map((p) => p.name), ['Beta', 'delta', 'zeta']);
  const ranged = await prisma.project.findMany({
    where: { ...base, OR: [{ budget: { gte: new Prisma.Decimal('40.5') } }, { name: { startsWith: 'al' } }], NOT: { name: 'zeta' } },
    orderBy: [{ stars: 'desc' }, { name: 'asc' }], select: { name: true, stars: true },
  });
  assert.deepEqual(ranged, [{ name: 'Epsilon', stars: 1 }, { name: 'alpha', stars: 0 }, { name: 'delta', stars: 0 }]);
  const page = await prisma.project.findMany({ where: base, orderBy: { name: 'asc' }, skip: 2, take: 2, select: { name: true } });
  assert.deepEqual(page.map((p) => p.name), ['alpha', 'delta']); // 'Beta','Epsilon' sort first (C collation)
  const all = await prisma.project.findMany({ where: base, orderBy: { id: 'asc' } });
  const after = await prisma.project.findMany({ where: base, orderBy: { id: 'asc' }, cursor: { id: all[2].id }, skip: 1, take: 2 });
  assert.deepEqual(ids(after), ids(all.slice(3, 5)));
  const before = await prisma.project.findMany({ where: base, orderBy: { id: 'asc' }, cursor: { id: all[4].id }, take: -2 });
  assert.deepEqual(ids(before), ids(all.slice(3, 5)));
  const distinct = await prisma.project.findMany({ where: base, distinct: ['stars'], orderBy: [{ stars: 'asc' }, { name: 'asc' }], select: { stars: true, name: true } });
  assert.deepEqual(distinct, [{ stars: 0, name: 'alpha' }, { stars: 1, name: 'Beta' }, { stars: 2, name: 'gamma' }]);
  const first = await prisma.project.findFirst({ where: { ...base, stars: { in: [1, 2] } }, orderBy: { budget: 'desc' } });
  assert.equal(first.name, 'zeta');
  assert.equal(await prisma.project.findFirst({ where: { ...base, name: 'none' } }), null);
  const counted = await prisma.project.count({ where: { ...base, status: { not: 'ACTIVE' } } });
  assert.equal(counted, 3);
});

test('relations: include with filters, nested select, _count, relation filters, m-n', async () => {
  const owner = await prisma.account.create({
    data: {
      handle: 'rel',
      projects: {
        create: [
          { name: 'p1', budget: 1, tasks: { create: [{ title: 't1', done: true }, { title: 't2' }, { title: 't3', done: true }] }, labels: { connectOrCreate: [{ where: { name: 'ops' }, create: { name: 'ops' } }] } },
          { name: 'p2', budget: 2, labels: { connectOrCreate: [{ where: { name: 'ops' }, create: { name: 'ops' } }, { where: { name: 'web' }, create: { name: 'web' } }] } },
        ],
      },
    },
  });
  const withTasks = await prisma.account.findUnique({
    where: { id: owner.id },
    include: { projects: { orderBy: { name: 'asc' }, include: { tasks: { where: { done: true }, orderBy: { title: 'desc' } }, labels: { orderBy: { name: 'asc' } } } } },
  });
  assert.deepEqual(withTasks.projects.map((p) => [p.name, p.tasks.map((t) => t.title), p.labels.map((l) => l.name)]),
    [['p1', ['t3', 't1'], ['ops']], ['p2', [], ['ops', 'web']]]);
  const nested = await prisma.project.findMany({
    where: { ownerId: owner.id }, orderBy: { name: 'asc' },
    select: { name: true, owner: { select: { handle: true } }, _count: { select: { tasks: true, labels: true } }, tasks: { select: { title: true }, take: 1, orderBy: { title: 'asc' } } },
  });
  assert.deepEqual(nested, [
    { name: 'p1', owner: { handle: 'rel' }, _count: { tasks: 3, labels: 1 }, tasks: [{ title: 't1' }] },
    { name: 'p2', owner: { handle: 'rel' }, _count: { tasks: 0, labels: 2 }, tasks: [] },
  ]);
  const filtered = await prisma.project.findMany({ where: { ownerId: owner.id, tasks: { some: { done: false } } }, select: { name: true } });
  assert.deepEqual(filtered, [{ name: 'p1' }]);
  const none = await prisma.project.findMany({ where: { ownerId: owner.id, tasks: { none: {} } }, select: { name: true } });
  assert.deepEqual(none, [{ name: 'p2' }]);
  const byLabel = await prisma.label.findUnique({ where: { name: 'web' }, select: { projects: { select: { name: true } }, _count: { select: { projects: true } } } });
  assert.deepEqual(byLabel, { projects: [{ name: 'p2' }], _count: { projects: 1 } });
  const ordered = await prisma.project.findMany({ where: { ownerId: owner.id }, orderBy: { tasks: { _count: 'desc' } }, select: { name: true } });
  assert.deepEqual(ordered.map((p) => p.name), ['p1', 'p2']);
  const badgeless = await prisma.account.findMany({ where: { id: owner.id, badge: { is: null } }, select: { handle: true } });
  assert.deepEqual(badgeless, [{ handle: 'rel' }]);
});

test('update with atomic operations, nested writes and m-n set', async () => {
  const a = await prisma.account.create({ data: { handle: 'upd', credit: '10', visits: 9007199254740990n, rating: 4 } });
  const u = await prisma.account.update({
    where: { handle: 'upd' },
    data: { credit: { increment: new Prisma.Decimal('0.000001') }, visits: { increment: 5n }, rating: { divide: 8 }, plan: { set: 'ENTERPRISE' } },
  });
  assert.ok(u.credit.equals('10.000001'));
  assert.equal(u.visits, 9007199254740995n);
  assert.equal(u.rating, 0.5);
  assert.equal(u.plan, 'ENTERPRISE');
  assert.ok(u.updatedAt >= a.updatedAt);
  const p = await prisma.project.create({ data: { name: 'nested', budget: 5, ownerId: a.id, tasks: { create: [{ title: 'a', priority: 1 }, { title: 'b', priority: 5 }] } } });
  const after = await prisma.project.update({
    where: { ownerId_name: { ownerId: a.id, name: 'nested' } },
    data: {
      stars: { multiply: 3, }, budget: { decrement: 1.5 },
      tasks: { updateMany: { where: { priority: { gt: 2 } }, data: { done: true, priority: { decrement: 1 } } }, deleteMany: { title: 'a' }, create: { title: 'c' } },
      labels: { connectOrCreate: { where: { name: 'x' }, create: { name: 'x' } } },
    },
    include: { tasks: { orderBy: { title: 'asc' } }, labels: true },
  });
  assert.equal(after.id, p.id);
  assert.ok(after.budget.equals('3.5'));
  assert.deepEqual(after.tasks.map((t) => [t.title, t.done, t.priority]), [['b', true, 4], ['c', false, 0]]);
  assert.deepEqual(after.labels.map((l) => l.name), ['x']);
  const reset = await prisma.project.update({ where: { id: p.id }, data: { labels: { set: [] } }, select: { labels: true } });
  assert.deepEqual(reset, { labels: [] });
  const many = await prisma.task.updateMany({ where: { projectId: p.id }, data: { estimate: 1.25 } });
  assert.deepEqual(many, { count: 2 });
  const returned = await prisma.task.updateManyAndReturn({ where: { projectId: p.id, done: false }, data: { done: true }, select: { title: true, done: true } });
  assert.deepEqual(returned, [{ title: 'c', done: true }]);
  const [{ estimates }] = await s.sql('select array_agg(estimate order by title) as estimates from ep_tasks where "projectId" = $1', [p.id]);
  assert.deepEqual(estimates, [1.25, 1.25]);
});

test('upsert creates, then updates', async () => {
  const args = (n) => ({ where: { handle: 'ups' }, create: { handle: 'ups', visits: n }, update: { visits: { increment: n } } });
  const created = await prisma.account.upsert(args(3n));
  assert.equal(created.visits, 3n);
  const updated = await prisma.account.upsert(args(4n));
  assert.equal(updated.id, created.id);
  assert.equal(updated.visits, 7n);
  const [{ n }] = await s.sql("select count(*)::int as n from ep_accounts where handle = 'ups'");
  assert.equal(n, 1);
});

test('delete and deleteMany', async () => {
  const a = await prisma.account.create({ data: { handle: 'del', projects: { create: [{ name: 'd1', budget: 1, tasks: { create: [{ title: 'x' }] } }, { name: 'd2', budget: 2 }] } }, include: { projects: true } });
  const gone = await prisma.project.delete({ where: { id: a.projects[0].id }, select: { name: true } });
  assert.deepEqual(gone, { name: 'd1' });
  const [{ n }] = await s.sql('select count(*)::int as n from ep_tasks where "projectId" = $1', [a.projects[0].id]);
  assert.equal(n, 0, 'tasks cascade');
  assert.deepEqual(await prisma.project.deleteMany({ where: { ownerId: a.id } }), { count: 1 });
  assert.deepEqual(await prisma.project.deleteMany({ where: { ownerId: a.id } }), { count: 0 });
  const missing = await errorOf(() => prisma.project.delete({ where: { id: 'nope' } }));
  assert.ok(missing instanceof Prisma.PrismaClientKnownRequestError);
  assert.equal(missing.code, 'P2025');
});

test('aggregate and groupBy', async () => {
  const a = await prisma.account.create({ data: { handle: 'agg' } });
  const rows = [['g1', 'ACTIVE', '1.10', 3], ['g2', 'ACTIVE', '2.20', 5], ['g3', 'DRAFT', '3.30', 1], ['g4', 'ARCHIVED', '4.40', 1]];
  await prisma.project.createMany({ data: rows.map(([name, status, budget, stars]) => ({ name, status, budget, stars, ownerId: a.id })) });
  const agg = await prisma.project.aggregate({
    where: { ownerId: a.id }, _count: { _all: true, status: true }, _sum: { budget: true, stars: true }, _avg: { stars: true, budget: true },
    _min: { name: true, budget: true }, _max: { stars: true, createdAt: true },
  });
  assert.equal(agg._count._all, 4);
  assert.equal(agg._count.status, 4);
  assert.ok(agg._sum.budget.equals('11'));
  assert.equal(agg._sum.stars, 10);
  assert.equal(agg._avg.stars, 2.5);
  assert.ok(agg._avg.budget.equals('2.75'));
  assert.equal(agg._min.name, 'g1');
  assert.ok(agg._min.budget.equals('1.1'));
  assert.equal(agg._max.stars, 5);
  assert.ok(agg._max.createdAt instanceof Date);
  const groups = await prisma.project.groupBy({
    by: ['status'], where: { ownerId: a.id }, _count: { _all: true }, _sum: { stars: true }, _max: { budget: true },
    having: { stars: { _sum: { gt: 1 } } }, orderBy: { status: 'asc' },
  });
  assert.deepEqual(groups.map((g) => [g.status, g._count._all, g._sum.stars, g._max.budget.toString()]), [['ACTIVE', 2, 8, '2.2']]);
  const big = await prisma.account.aggregate({ where: { id: a.id }, _sum: { visits: true, credit: true } });
  assert.equal(big._sum.visits, 0n);
  assert.ok(big._sum.credit.equals(0));
});

test('scalar lists: set, push, has, hasSome, isEmpty', async () => {
  const owner = await prisma.account.create({ data: { handle: 'lists', projects: { create: { name: 'l', budget: 1 } } }, include: { projects: true } });
  const projectId = owner.projects[0].id;
  const t = await prisma.task.create({ data: { title: 'listy', projectId, tags: ['a', 'b,c', 'd"e', 'ü'], points: [3, -1, 2] } });
  assert.deepEqual([t.tags, t.points], [['a', 'b,c', 'd"e', 'ü'], [3, -1, 2]]);
  await prisma.task.create({ data: { title: 'empty', projectId, tags: [] } });
  await prisma.task.create({ data: { title: 'null list', projectId } }); // NULL: neither empty nor containing
  const pushed = await prisma.task.update({ where: { id: t.id }, data: { tags: { push: ['x', 'y'] }, points: { set: [7] } } });
  assert.deepEqual([pushed.tags, pushed.points], [['a', 'b,c', 'd"e', 'ü', 'x', 'y'], [7]]);
  const where = (w) => prisma.task.findMany({ where: { projectId, ...w }, select: { title: true }, orderBy: { title: 'asc' } });
  assert.deepEqual(await where({ tags: { has: 'b,c' } }), [{ title: 'listy' }]);
  assert.deepEqual(await where({ tags: { hasSome: ['zz', 'y'] } }), [{ title: 'listy' }]);
  assert.deepEqual(await where({ tags: { hasEvery: ['a', 'zz'] } }), []);
  assert.deepEqual(await where({ tags: { isEmpty: true } }), [{ title: 'empty' }]);
  const [row] = await s.sql('select tags, points from ep_tasks where id = $1', [t.id]);
  assert.deepEqual(row, { tags: ['a', 'b,c', 'd"e', 'ü', 'x', 'y'], points: [7] });
});

test('parallel findUnique calls by a compound unique key', async () => {
  const owner = await prisma.account.create({ data: { handle: 'compound', projects: { create: [{ name: 'x', budget: 1 }, { name: 'y', budget: 2 }] } } });
  const got = await Promise.all(['y', 'nope', 'x'].map((name) =>
    prisma.project.findUnique({ where: { ownerId_name: { ownerId: owner.id, name } }, select: { name: true, budget: true } })));
  assert.deepEqual(got.map((p) => p && [p.name, p.budget.toString()]), [['y', '2'], null, ['x', '1']]);
});

test('$queryRaw and $executeRaw with typed parameters and results', async () => {
  const at = new Date('2031-02-03T04:05:06.789Z');
  const [row] = await prisma.$queryRaw`select ${41}::int + 1 as answer, ${'text'}::text as t, ${12345678901234567n}::int8 as big,
    ${new Prisma.Decimal('99.125')}::numeric as dec, ${at}::timestamptz as at, ${Buffer.from([0, 255, 7])}::bytea as bytes,
    ${JSON.stringify({ k: [1, 'two'] })}::jsonb as doc, ${true}::bool as flag, ${[3, 1, 2]}::int[] as ints, null::text as nothing`;
  assert.equal(row.answer, 42);
  assert.equal(row.t, 'text');
  assert.equal(row.big, 12345678901234567n);
  assert.ok(Prisma.Decimal.isDecimal(row.dec) && row.dec.equals('99.125'));
  assert.ok(row.at instanceof Date);
  assert.equal(row.at.toISOString(), at.toISOString());
  assert.deepEqual([...row.bytes], [0, 255, 7]);
  assert.deepEqual(row.doc, { k: [1, 'two'] });
  assert.equal(row.flag, true);
  assert.deepEqual(row.ints, [3, 1, 2]);
  assert.equal(row.nothing, null);
  const handles = ['ada', 'nobody', 'c1'];
  const joined = await prisma.$queryRaw`select handle from ep_accounts where handle in (${Prisma.join(handles)}) ${Prisma.sql`order by handle`}`;
  assert.deepEqual(joined, [{ handle: 'ada' }, { handle: 'c1' }]);
  const unsafe = await prisma.$queryRawUnsafe('select $1::text || $2::text as s', 'ab', 'cd');
  assert.deepEqual(unsafe, [{ s: 'abcd' }]);
  await prisma.label.createMany({ data: [{ name: 'raw1' }, { name: 'raw2' }] });
  const changed = await prisma.$executeRaw`update ep_labels set color = ${'teal'} where name like ${'raw%'}`;
  assert.equal(changed, 2);
  assert.equal(await prisma.$executeRawUnsafe('delete from ep_labels where name = $1', 'raw1'), 1);
  const left = await prisma.$queryRaw`select name, color from ep_labels where name like ${'raw%'} order by name`;
  assert.deepEqual(left, [{ name: 'raw2', color: 'teal' }]);
  const rawErr = await errorOf(() => prisma.$queryRaw`select * from no_such_table`);
  assert.equal(rawErr.code, 'P2010');
  assert.match(rawErr.message, /42P01/);
});
