/**
 * The benchmarks' HTTP load generator: autocannon, run in its own process (so it never shares an
 * event loop with the server under test), against one target for a fixed time. Prints one JSON
 * line (`LoadResult`): requests/s, latency percentiles of the 2xx responses, errors.
 *
 *   node --import tsx tests/bench/http-load.ts <load.json>
 *
 * `load.json` is a `LoadSpec`: the URL, method, headers, an optional rotating list of JSON bodies
 * (each connection cycles through them), duration (or a number of requests), connections and
 * pipelining. Latencies are
 * taken from autocannon's per-response event (sub-millisecond resolution; autocannon's own
 * histogram keeps whole milliseconds and has no p95).
 */
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

export interface LoadSpec {
  readonly url: string;
  readonly method?: 'GET' | 'POST';
  readonly headers?: Record<string, string>;
  /** JSON bodies sent in turn (POST); none for GET. */
  readonly bodies?: unknown[];
  /** How long to send requests; responses still in flight at the end are not counted. */
  readonly seconds: number;
  /**
   * Send exactly this many requests instead and wait for every answer (`seconds` is then
   * ignored): for slow endpoints, whose latency a fixed window would cut off.
   */
  readonly amount?: number;
  readonly connections: number;
  readonly pipelining: number;
  /** Seconds before a request counts as timed out (default 30). */
  readonly timeoutSeconds?: number;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  mean_ms: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Connection errors, timeouts included. */
  errors: number;
  non2xx: number;
  /** 2xx responses whose body contains `"allow"` (the EMQX authorization benchmark). */
  allowed: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const method = spec.method ?? 'GET';
  const headers = { ...(spec.bodies ? { 'content-type': 'application/json' } : {}), ...spec.headers };
  let allowed = 0;
  const countAllowed = (status: number, body: string): void => {
    if (status < 300 && body.includes('"allow"')) allowed++;
  };
  const requests = spec.bodies?.map((body) => ({ method, headers, body: JSON.stringify(body), onResponse: countAllowed }));
  let latencies = new Float64Array(1 << 16);
  let recorded = 0;
  // Our own clock: autocannon reports durations in whole seconds at best, too coarse for a
  // fixed number of fast requests.
  const began = performance.now();
  let lastAnswer = began;
  let instance: autocannon.Instance | undefined;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: spec.url,
        method,
        headers,
        ...(requests ? { requests } : {}),
        connections: spec.connections,
        pipelining: spec.pipelining,
        ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.seconds }),
        timeout: spec.timeoutSeconds ?? 30,
      },
      (error: unknown, result: autocannon.Result) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(result)),
    );
  });
  instance!.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode < 200 || statusCode >= 300) return;
    if (recorded === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[recorded++] = responseTime;
    lastAnswer = performance.now();
  });
  const result = await finished;
  const sorted = latencies.subarray(0, recorded).sort();
  const seconds = spec.amount !== undefined ? (lastAnswer - began) / 1000 : result.duration;
  return {
    requests: result['2xx'],
    seconds,
    rps: result['2xx'] / seconds,
    mean_ms: recorded ? sorted.reduce((sum, value) => sum + value, 0) / recorded : 0,
    p50_ms: percentile(sorted, 50),
    p95_ms: percentile(sorted, 95),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.length ? sorted[sorted.length - 1]! : 0,
    errors: result.errors,
    non2xx: result.non2xx,
    allowed,
  };
}

const specFile = process.argv[2];
if (!specFile) throw new Error('usage: http-load.ts <load.json>');
const result = await run(JSON.parse(readFileSync(specFile, 'utf8')) as LoadSpec);
process.stdout.write(JSON.stringify(result) + '\n');
