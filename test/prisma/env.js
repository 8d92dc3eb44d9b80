// What every Prisma test file talks to: the node harness (a throwaway PostgreSQL 15 and the real
// `edgepool pooler` process, ../node/harness.js) with schema.sql applied, and Prisma 7 clients
// pointed at the pool's Prisma Accelerate endpoint (`accelerateUrl`) or, for comparison, at its
// Postgres listener through @prisma/adapter-pg.
//
// PRISMA_REFERENCE_SERVER=<script> (development only, never in CI: make test-prisma-reference) runs the Accelerate half
// against Prisma's own reference server instead of edgepool: the script is started as
// `node <script> <postgres-url>` on the harness's database and prints {"url":"http://127.0.0.1:P"}
// once listening. That checks the suite's expectations against the reference; see README.md.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { withAccelerate } from '@prisma/extension-accelerate';
import { startHarness } from '../node/harness.js';
import { PrismaClient, Prisma } from './generated/client.ts';

export { Prisma };
const here = path.dirname(fileURLToPath(import.meta.url));
export const reference = process.env.PRISMA_REFERENCE_SERVER;

// startStack starts the harness (args go to it, e.g. ['-tls']), applies schema.sql, and returns
// { h, accelerateUrl, client(opts), accelerated(opts), adapterClient(), sql(text, params), stop() }.
export async function startStack(args = []) {
  const h = await startHarness(args);
  const stack = { h, clients: [] };
  const admin = new pg.Client({ connectionString: h.upstream });
  await admin.connect();
  await admin.query(readFileSync(path.join(here, 'schema.sql'), 'utf8'));
  // Direct SQL on the upstream database, to set up and to check what Prisma wrote.
  stack.sql = async (text, params = []) => (await admin.query(text, params)).rows;

  let ref;
  if (reference) {
    ref = await startReference(reference, h.upstream);
    stack.accelerateUrl = `prisma+postgres://localhost:${new URL(ref.url).port}/?api_key=${h.key}`;
  } else {
    stack.accelerateUrl = `prisma+postgres://localhost:${h.http.split(':').pop()}/?api_key=${h.key}`;
  }
  stack.client = (opts = {}) => track(stack, new PrismaClient({ accelerateUrl: stack.accelerateUrl, ...opts }));
  stack.accelerated = (opts = {}) => stack.client(opts).$extends(withAccelerate());
  // The same schema over the pool's Postgres listener with the driver adapter (no Accelerate).
  stack.adapterClient = () => track(stack, new PrismaClient({
    adapter: new PrismaPg({ connectionString: `postgres://${h.user}:${h.key}@${h.postgres}/${h.database}?sslmode=disable` }),
  }));
  stack.stop = async () => {
    await Promise.allSettled(stack.clients.map((c) => c.$disconnect()));
    await admin.end().catch(() => {});
    await ref?.stop();
    await h.stop();
  };
  return stack;
}

function track(stack, client) {
  stack.clients.push(client);
  return client;
}

async function startReference(script, databaseUrl) {
  const child = spawn(process.execPath, [script, databaseUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const line = await Promise.race([
    new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve)),
    exited.then((code) => { throw new Error(`reference server exited (${code})`); }),
  ]);
  return {
    url: JSON.parse(line).url,
    stop: async () => { child.kill('SIGTERM'); await exited; },
  };
}

// errorOf runs fn and returns what it threw (failing when it did not throw).
export async function errorOf(fn) {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, got none');
}

// eventually retries fn until it returns without throwing, for up to ms.
export async function eventually(fn, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
