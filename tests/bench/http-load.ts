/**
 * A small HTTP load generator run in its own process (so it does not share an event loop with the
 * server under test): POSTs a rotating set of JSON bodies for a fixed time with undici
 * (keep-alive, pipelining) and prints one JSON line with requests/s, latency percentiles and errors.
 *
 *   node --import tsx tests/bench/http-load.ts <url> <bodies.json> <seconds> <connections> <pipelining>
 */
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

const [url, bodiesFile, secondsArg, connectionsArg, pipeliningArg] = process.argv.slice(2);
if (!url || !bodiesFile) throw new Error('usage: http-load.ts <url> <bodies.json> <seconds> <connections> <pipelining>');
const bodies = (JSON.parse(readFileSync(bodiesFile, 'utf8')) as unknown[]).map((b) => JSON.stringify(b));
const seconds = Number(secondsArg ?? 10);
const connections = Number(connectionsArg ?? 32);
const pipelining = Number(pipeliningArg ?? 4);
const target = new URL(url);
const pool = new Pool(target.origin, { connections, pipelining, keepAliveTimeout: 30_000 });

const latencies: number[] = [];
let errors = 0;
let non2xx = 0;
let allowed = 0;
let done = 0;
const deadline = Date.now() + seconds * 1000;
let i = 0;

async function worker(): Promise<void> {
  while (Date.now() < deadline) {
    const body = bodies[i++ % bodies.length]!;
    const started = performance.now();
    try {
      const res = await pool.request({ method: 'POST', path: target.pathname, headers: { 'content-type': 'application/json' }, body });
      const text = await res.body.text();
      if (res.statusCode >= 300) non2xx++;
      else if (text.includes('"allow"')) allowed++;
      latencies.push(performance.now() - started);
      done++;
    } catch {
      errors++;
    }
  }
}

const began = performance.now();
await Promise.all(Array.from({ length: connections * pipelining }, () => worker()));
const elapsed = (performance.now() - began) / 1000;
await pool.close();
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(
  JSON.stringify({ requests: done, seconds: elapsed, rps: done / elapsed, p50_ms: pct(50), p99_ms: pct(99), max_ms: latencies.at(-1) ?? 0, errors, non2xx, allowed }) + '\n',
);
