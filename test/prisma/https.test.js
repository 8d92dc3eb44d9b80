// prisma://host/?api_key=… always means https: a Prisma 7 app reaches a pool serving TLS with a
// certificate from its own CA when NODE_EXTRA_CA_CERTS names that CA, and is refused without it.
// Each case runs the app in a child node process, because node reads NODE_EXTRA_CA_CERTS at start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startStack, reference } from './env.js';

const skip = reference && 'the reference executor serves plain http only';
const here = path.dirname(fileURLToPath(import.meta.url));
let s;
let url;

before(async () => {
  if (skip) return;
  s = await startStack(['-tls']);
  url = `prisma://localhost:${s.h.http.split(':').pop()}/?api_key=${s.h.key}`;
});

after(async () => {
  await s?.stop();
});

// app runs tls-client.js and returns its JSON line, plus its stderr (a failing app may also die
// of an unhandled rejection after printing).
async function app(env) {
  let stdout;
  let stderr;
  try {
    ({ stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(here, 'tls-client.js')], {
      cwd: here, timeout: 60_000, env: { ...process.env, NODE_EXTRA_CA_CERTS: '', ACCELERATE_URL: url, ...env },
    }));
  } catch (e) {
    ({ stdout, stderr } = e);
  }
  const line = stdout.trim().split('\n').pop();
  return { ...(line ? JSON.parse(line) : { ok: false }), stderr };
}

test('without the pool CA the app is refused (certificate verification is on)', { skip }, async () => {
  const r = await app({});
  assert.equal(r.ok, false);
  assert.match(`${r.error?.message} ${r.error?.cause} ${r.stderr}`, /unable to verify the first certificate/);
  assert.deepEqual(await s.sql("select handle from ep_accounts where handle = 'tls'"), []);
});

test('with NODE_EXTRA_CA_CERTS the app works over https: CRUD, compaction, transactions, errors, cache, invalidate', { skip }, async () => {
  const r = await app({ NODE_EXTRA_CA_CERTS: s.h.ca });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(r.results, {
    created: { handle: 'tls', visits: '9007199254740993', budget: '3.14' },
    compacted: [{ handle: 'tls' }, null],
    itx: 1,
    duplicate: 'P2002',
    cache: ['miss', 'ttl', 'miss'],
  });
});
