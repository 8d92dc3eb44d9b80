// Errors as Prisma presents them: P2002 naming the constraint, P2003, P2025 for every "record
// required but not found" the server must enforce, P2010 for raw SQL, and a refused API key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, errorOf, reference, Prisma } from './env.js';
import { PrismaClient } from './generated/client.ts';

let s;
let prisma;
let owner;

before(async () => {
  s = await startStack();
  prisma = s.client();
  owner = await prisma.account.create({ data: { handle: 'owner', projects: { create: { name: 'only', budget: 1 } } } });
});

after(async () => {
  await s?.stop();
});

const known = (err, code) => {
  assert.ok(err instanceof Prisma.PrismaClientKnownRequestError, `${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.code, code, err.message);
};

test('P2002: unique constraint, single and compound', async () => {
  const single = await errorOf(() => prisma.account.create({ data: { handle: 'owner' } }));
  known(single, 'P2002');
  assert.match(single.message, /Unique constraint failed on the constraint: `ep_accounts_handle_key`/);
  assert.equal(single.meta?.modelName, 'Account');
  assert.equal(single.meta?.driverAdapterError?.cause?.originalCode, '23505');
  const compound = await errorOf(() => prisma.project.create({ data: { name: 'only', budget: 2, ownerId: owner.id } }));
  known(compound, 'P2002');
  assert.match(compound.message, /ep_projects_ownerId_name_key/);
  const upsertMany = await errorOf(() => prisma.label.createMany({ data: [{ name: 'dup' }, { name: 'dup' }] }));
  known(upsertMany, 'P2002');
  assert.deepEqual(await s.sql("select * from ep_labels where name = 'dup'"), [], 'nothing of the failed createMany stays');
});

test('P2003: foreign key on create and on delete', async () => {
  const create = await errorOf(() => prisma.project.create({ data: { name: 'orphan', budget: 1, ownerId: 424242n } }));
  known(create, 'P2003');
  assert.match(create.message, /ep_projects_ownerId_fkey/);
  const del = await errorOf(() => prisma.account.delete({ where: { id: owner.id } }));
  known(del, 'P2003');
  assert.equal((await s.sql('select count(*)::int as n from ep_accounts where id = $1', [owner.id]))[0].n, 1);
});

test('P2025: records required but not found', async () => {
  known(await errorOf(() => prisma.account.update({ where: { handle: 'ghost' }, data: { visits: 1n } })), 'P2025');
  known(await errorOf(() => prisma.account.delete({ where: { handle: 'ghost' } })), 'P2025');
  known(await errorOf(() => prisma.account.findUniqueOrThrow({ where: { handle: 'ghost' } })), 'P2025');
  known(await errorOf(() => prisma.account.findFirstOrThrow({ where: { handle: { startsWith: 'ghost' } } })), 'P2025');
  const connect = await errorOf(() => prisma.project.create({ data: { name: 'c', budget: 1, owner: { connect: { handle: 'ghost' } } } }));
  known(connect, 'P2025');
  const nested = await errorOf(() => prisma.account.update({ where: { id: owner.id }, data: { projects: { update: { where: { id: 'ghost' }, data: { stars: 1 } } } } }));
  known(nested, 'P2025');
  assert.equal((await s.sql("select count(*)::int as n from ep_projects where name = 'c'"))[0].n, 0);
});

test('P2010: raw query errors carry the SQLSTATE', async () => {
  const err = await errorOf(() => prisma.$executeRaw`insert into ep_labels (name) values (null)`);
  known(err, 'P2010');
  assert.match(err.message, /23502/);
});

test('a wrong API key is refused', { skip: reference && 'the reference executor does not authenticate' }, async () => {
  const wrong = new PrismaClient({ accelerateUrl: s.accelerateUrl.replace(/api_key=[^&]+/, 'api_key=ep_wrong') });
  try {
    const err = await errorOf(() => wrong.account.count());
    assert.ok(err instanceof Prisma.PrismaClientKnownRequestError || err instanceof Prisma.PrismaClientInitializationError, String(err));
    assert.match(err.message, /key|auth/i);
    const write = await errorOf(() => wrong.label.create({ data: { name: 'sneaky' } }));
    assert.match(write.message, /key|auth/i);
    assert.deepEqual(await s.sql("select * from ep_labels where name = 'sneaky'"), []);
  } finally {
    await wrong.$disconnect();
  }
});
