// Starts the Go harness (throwaway Postgres + pooler edge listener) and reads the one JSON
// line it prints: { http, admin, user, key, database, poolSize }.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const defaultBinary = path.resolve(here, '../../bin/edgepool-node-harness');

export async function startHarness(args = []) {
  const binary = process.env.EDGEPOOL_HARNESS ?? defaultBinary;
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    new Promise((resolve) => lines.once('line', resolve)),
    exited.then((code) => { throw new Error(`harness exited (${code}) before it was ready`); }),
    new Promise((_, reject) => setTimeout(() => reject(new Error('harness not ready after 60s')), 60_000).unref()),
  ]);
  const info = JSON.parse(first);
  info.url = `postgres://${info.user}:${info.key}@localhost/${info.database}`;
  info.stop = async () => {
    child.stdin.end(); // the harness stops when its stdin closes
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  };
  return info;
}
