// Decimal, BigInt, DateTime, Json, Bytes, Float and enums round-trip exactly through
// `accelerateUrl`, and read back the same as through @prisma/adapter-pg over the pool's
// Postgres listener (Prisma's own driver path, the yardstick).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, Prisma } from './env.js';

let s;
let prisma;
let viaAdapter;

before(async () => {
  s = await startStack();
  prisma = s.client();
  viaAdapter = s.adapterClient();
});

after(async () => {
  await s?.stop();
});

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const settings = {
  unicode: 'zaï 東京 🚀 "quoted" \\ back', nested: { list: [1, -2.5, 1e21, true, null, { deep: [] }] },
  big: '9223372036854775807', empty: {}, zero: 0,
};
const extremes = [
  { handle: 'max', credit: new Prisma.Decimal('99999999999999.999999'), visits: 9223372036854775807n, avatar: allBytes, settings,
    rating: 0.1 + 0.2, joinedAt: new Date('2038-01-19T03:14:07.999Z'), birthday: new Date('1970-01-01T00:00:00.000Z'), plan: 'ENTERPRISE' },
  { handle: 'min', credit: new Prisma.Decimal('-0.000001'), visits: -9223372036854775808n, avatar: Buffer.alloc(0), settings: [1, 'two', null],
    rating: -1.5e300, joinedAt: new Date('1901-12-13T20:45:52.001Z'), birthday: new Date('2000-02-29T00:00:00.000Z'), plan: 'FREE' },
  { handle: 'scalar-json', credit: new Prisma.Decimal('0'), visits: 0n, avatar: null, settings: 'just a string',
    rating: 5e-324, joinedAt: new Date(0), birthday: null, plan: 'PRO' },
];

function assertAccount(got, want, via) {
  assert.ok(Prisma.Decimal.isDecimal(got.credit), `${via}: credit is a Decimal`);
  assert.equal(got.credit.toFixed(6), want.credit.toFixed(6), `${via}: credit`);
  assert.equal(typeof got.visits, 'bigint', `${via}: visits is a bigint`);
  assert.equal(got.visits, want.visits, `${via}: visits`);
  if (want.avatar === null) assert.equal(got.avatar, null, `${via}: avatar`);
  else {
    assert.ok(got.avatar instanceof Uint8Array, `${via}: avatar is bytes`);
    assert.deepEqual(Buffer.from(got.avatar), want.avatar, `${via}: avatar`);
  }
  assert.deepEqual(got.settings, want.settings, `${via}: settings`);
  assert.equal(got.rating, want.rating, `${via}: rating`);
  assert.ok(got.joinedAt instanceof Date, `${via}: joinedAt is a Date`);
  assert.equal(got.joinedAt.toISOString(), want.joinedAt.toISOString(), `${via}: joinedAt`);
  assert.equal(got.birthday?.toISOString() ?? null, want.birthday?.toISOString() ?? null, `${via}: birthday`);
  assert.equal(got.plan, want.plan, `${via}: plan`);
}

test('extreme values round-trip exactly, the same as through adapter-pg', async () => {
  for (const want of extremes) {
    const created = await prisma.account.create({ data: want });
    assertAccount(created, want, 'create result');
    assertAccount(await prisma.account.findUnique({ where: { handle: want.handle } }), want, 'accelerate findUnique');
    assertAccount(await viaAdapter.account.findUnique({ where: { handle: want.handle } }), want, 'adapter-pg findUnique');
  }
  const [row] = await s.sql("select credit::text, visits::text, length(avatar) as n, settings, rating, birthday::text from ep_accounts where handle = 'max'");
  assert.deepEqual(row, { credit: '99999999999999.999999', visits: '9223372036854775807', n: 256, settings, rating: 0.30000000000000004, birthday: '1970-01-01' });
});

test('whole rows read back identically through accelerateUrl and adapter-pg', async () => {
  const query = { orderBy: { id: 'asc' }, include: { projects: { include: { labels: true, tasks: true } }, badge: true } };
  await prisma.project.create({
    data: { name: 'typed', budget: '1234567890.12', owner: { connect: { handle: 'max' } }, status: 'ARCHIVED',
      tasks: { create: [{ title: 't', estimate: 2.75, dueAt: new Date('2030-05-06T07:08:09.010Z') }] }, labels: { create: [{ name: 'l' }] } },
  });
  const a = await prisma.account.findMany(query);
  const b = await viaAdapter.account.findMany(query);
  assert.equal(a.length, b.length);
  // Decimals are objects of the same class either way; compare their values.
  const plain = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x)));
  assert.deepEqual(plain(a), plain(b));
  assert.ok(a[0].projects[0].budget.equals('1234567890.12'));
  assert.equal(a[0].projects[0].tasks[0].dueAt.toISOString(), '2030-05-06T07:08:09.010Z');
});

test('filters on typed values', async () => {
  const byBig = await prisma.account.findMany({ where: { visits: { gte: 9223372036854775807n } }, select: { handle: true } });
  assert.deepEqual(byBig, [{ handle: 'max' }]);
  const byDecimal = await prisma.account.findMany({ where: { credit: { lt: new Prisma.Decimal('0') } }, select: { handle: true } });
  assert.deepEqual(byDecimal, [{ handle: 'min' }]);
  const byDate = await prisma.account.findMany({ where: { joinedAt: { gt: new Date('2000-01-01') } }, select: { handle: true } });
  assert.deepEqual(byDate, [{ handle: 'max' }]);
  const byBytes = await prisma.account.findMany({ where: { avatar: { equals: allBytes } }, select: { handle: true } });
  assert.deepEqual(byBytes, [{ handle: 'max' }]);
  const byJsonPath = await prisma.account.findMany({ where: { settings: { path: ['nested', 'list'], array_contains: [true] } }, select: { handle: true } });
  assert.deepEqual(byJsonPath, [{ handle: 'max' }]);
  const byEnum = await prisma.account.findMany({ where: { plan: { in: ['PRO', 'ENTERPRISE'] } }, orderBy: { plan: 'desc' }, select: { plan: true } });
  assert.deepEqual(byEnum, [{ plan: 'ENTERPRISE' }, { plan: 'PRO' }]);
  const nullJson = await prisma.account.create({ data: { handle: 'json-null', settings: Prisma.JsonNull } });
  assert.equal(nullJson.settings, null);
  const dbNull = await prisma.account.findMany({ where: { settings: { equals: Prisma.DbNull } }, select: { handle: true } });
  assert.deepEqual(dbNull, []);
  const [{ settings: stored }] = await s.sql("select settings is null as settings from ep_accounts where handle = 'json-null'");
  assert.equal(stored, false, 'JsonNull is a JSON null, not SQL NULL');
});
