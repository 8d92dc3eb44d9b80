// Prisma 7 findUnique by primary key on pgbench_accounts, from N concurrent PrismaClients for a
// fixed time, through one of two paths to the same pool:
//   accelerate  new PrismaClient({ accelerateUrl })        → the pooler's Prisma Accelerate endpoint (HTTP)
//   adapter-pg  new PrismaClient({ adapter: PrismaPg(…) }) → the pooler's Postgres listener (one pg connection per client)
// Usage: node --import tsx bench.mjs MODE   (env: ACCELERATE_URL, DATABASE_URL, CLIENTS, BENCH_SECONDS, ACCOUNTS)
// Prints one JSON line: {mode, clients, seconds, requests, errors, requestsPerSec, p50ms, p90ms, p99ms,
// clientCpuSec (this process's CPU time during the timed part), firstError}.
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/client.ts';

const mode = process.argv[2];
const clients = Number(process.env.CLIENTS ?? 50);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const accounts = Number(process.env.ACCOUNTS ?? 100000);

function newClient() {
  if (mode === 'accelerate') return new PrismaClient({ accelerateUrl: process.env.ACCELERATE_URL });
  if (mode === 'adapter-pg') return new PrismaClient({ adapter: new PrismaPg({ connectionString: process.env.DATABASE_URL, max: 1 }) });
  throw new Error(`unknown mode ${mode}`);
}

const all = Array.from({ length: clients }, newClient);
// Warm-up: each client fetches /connection-info or connects, and compiles the query once.
await Promise.all(all.map((p) => p.account.findUnique({ where: { aid: 1 } })));

const cpuStart = process.cpuUsage();
const latencies = [];
let errors = 0;
let wrong = 0;
let firstError;
const start = performance.now();
const deadline = start + seconds * 1000;
await Promise.all(all.map(async (prisma) => {
  while (performance.now() < deadline) {
    const aid = 1 + Math.floor(Math.random() * accounts);
    const t = performance.now();
    try {
      const a = await prisma.account.findUnique({ where: { aid }, select: { aid: true, abalance: true } });
      if (a?.aid !== aid) wrong++;
      latencies.push(performance.now() - t);
    } catch (e) {
      errors++;
      firstError ??= `${e.code ?? ''} ${e.message}`.trim().slice(0, 300);
    }
  }
}));
const elapsed = (performance.now() - start) / 1000;
const cpu = process.cpuUsage(cpuStart);
await Promise.all(all.map((p) => p.$disconnect()));
latencies.sort((a, b) => a - b);
const pct = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null);
console.log(JSON.stringify({
  mode, clients, seconds, requests: latencies.length, errors: errors + wrong, requestsPerSec: latencies.length / elapsed,
  p50ms: pct(0.5), p90ms: pct(0.9), p99ms: pct(0.99), clientCpuSec: (cpu.user + cpu.system) / 1e6, firstError: firstError ?? (wrong ? `${wrong} wrong rows` : undefined),
}));
