/**
 * The instance grade, from the command line (issue 14, docs/GRADES.md): starts a load check on a
 * running instance (the quick start or a deployment) as its admin, prints every iteration as it
 * is recorded, waits until the check stops by itself, then fetches the signed load_limit report
 * with a scraper token and verifies it against the instance's published key.
 *
 *   npm run load-check -- --url http://127.0.0.1:5000 --login admin --password '...'
 *        [--units-start 10] [--units-max 1280] [--rate-per-unit 10] [--iteration-seconds 10]
 *        [--max-seconds 600] [--max-p99-ms 250] [--max-loss 0.001] [--out load_limit.json]
 *        [--scraper-token pus_...]   (else a token named "load-check CLI" is created)
 *
 * Environment instead of flags: PU_LOAD_CHECK_URL, PU_LOAD_CHECK_LOGIN, PU_LOAD_CHECK_PASSWORD.
 * Exit status: 0 = the report verifies, 1 = the check failed or the report does not verify.
 */
import { writeFileSync } from 'node:fs';
import { verifyReport } from '../backend/src/grades/report.ts';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const num = (name: string): number | undefined => (flag(name) === undefined ? undefined : Number(flag(name)));
const base = (flag('url') ?? process.env.PU_LOAD_CHECK_URL ?? 'http://127.0.0.1:5000').replace(/\/$/, '');
const prefix = flag('prefix') ?? '/pepeunit';
const api = `${base}${prefix}/api/v1`;
const login = flag('login') ?? process.env.PU_LOAD_CHECK_LOGIN;
const password = flag('password') ?? process.env.PU_LOAD_CHECK_PASSWORD;
const out = flag('out') ?? 'load_limit.json';
const say = (line: string) => process.stdout.write(`${line}\n`);

async function call(method: string, path: string, token: string | undefined, body?: unknown): Promise<unknown> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { ...(token ? { 'x-auth-token': token } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function main(): Promise<number> {
  if (!login || !password) {
    process.stderr.write('--login and --password (or PU_LOAD_CHECK_LOGIN / PU_LOAD_CHECK_PASSWORD) of the instance admin are required\n');
    return 2;
  }
  const { token } = (await call('POST', '/users/auth', undefined, { credentials: login, password })) as { token: string };
  const parameters = Object.fromEntries(
    Object.entries({
      units_start: num('units-start'),
      units_max: num('units-max'),
      units_step_factor: num('units-step-factor'),
      rate_per_unit: num('rate-per-unit'),
      iteration_seconds: num('iteration-seconds'),
      max_iterations: num('max-iterations'),
      max_seconds: num('max-seconds'),
      connect_rate: num('connect-rate'),
      service_level: Object.fromEntries(Object.entries({ max_latency_p99_ms: num('max-p99-ms'), max_loss: num('max-loss'), max_error_rate: num('max-error-rate') }).filter(([, v]) => v !== undefined)),
    }).filter(([, v]) => v !== undefined),
  );
  const started = (await call('POST', '/grades/load_checks', token, parameters)) as { uuid: string; parameters: Record<string, unknown> };
  say(`Load check ${started.uuid} started: ${JSON.stringify(started.parameters)}`);
  let printed = 0;
  let run: { status: string; grade_mps: number | null; stop_reason: string | null; iterations: Array<Record<string, unknown> & { latency_ms: { p99: number } }> };
  for (;;) {
    run = (await call('GET', `/grades/load_checks/${started.uuid}`, token)) as typeof run;
    for (const it of run.iterations.slice(printed)) {
      say(`  #${String(it.index)} units ${String(it.units)}  offered ${String(it.offered_mps)} MPS  achieved ${String(it.achieved_mps)} MPS  p99 ${it.latency_ms.p99} ms  loss ${String(it.loss)}  errors ${String(it.errors)}  ${it.held ? 'held' : `BROKE (${(it.violations as string[]).join('; ')})`}`);
    }
    printed = run.iterations.length;
    if (run.status !== 'running') break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  say(`Load check ${run.status}: grade ${String(run.grade_mps)} MPS (${String(run.stop_reason)})`);
  if (run.status !== 'finished') return 1;
  const scraper = flag('scraper-token') ?? ((await call('POST', '/grades/scraper_tokens', token, { name: 'load-check CLI' })) as { token: string }).token;
  const res = await fetch(`${api}/metrics/load_limit`, { headers: { authorization: `Bearer ${scraper}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics/load_limit: ${res.status} ${text}`);
  writeFileSync(out, text);
  const key = (await (await fetch(`${base}/.well-known/pepeunit-instance-key`)).json()) as { public_key: string };
  const result = verifyReport(JSON.parse(text), { trustedPublicKey: key.public_key });
  say(result.ok ? `Report written to ${out}; it verifies against the instance key.` : `Report written to ${out}; it does NOT verify: ${result.problems.join('; ')}`);
  say(`Verify offline: node --import tsx scripts/verify-load-limit.ts ${out} --public-key ${key.public_key}`);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`load check failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
