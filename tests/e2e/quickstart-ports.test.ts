/**
 * Stable quick-start ports and per-checkout databases (scripts/quickstart/): chosen once, reused,
 * a taken recorded port stops the start with a clear message unless `--move-ports`, and checkouts
 * on one machine never pick each other's ports, even when they plan at the same moment.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortTakenError, planPorts, type PortPlan } from '../../scripts/quickstart/ports.ts';
import { checkoutDatabaseName, initialDatabase, readPlatformState, writePlatformState, type QuickstartService } from '../../scripts/quickstart/state.ts';

let scratch = '';
let registryDir = '';
const services: QuickstartService[] = ['backend', 'mqtt', 'emqx_api', 'clickhouse'];

beforeEach(() => {
  scratch = mkdtempSync(join(tmpdir(), 'pu-ports-'));
  registryDir = join(scratch, 'registry');
});
afterEach(() => rmSync(scratch, { recursive: true, force: true }));

function checkout(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Plans like the launcher: recorded ports from the state file, the plan written back under the lock. */
async function plan(dataDir: string, opts: { movePorts?: boolean; busy?: Set<number> } = {}): Promise<PortPlan> {
  const previous = readPlatformState(dataDir);
  return planPorts({
    dataDir,
    services,
    recorded: previous?.ports ?? {},
    movePorts: opts.movePorts,
    registryDir,
    isFree: async (port) => !(opts.busy?.has(port) ?? false),
    commit: (p) => writePlatformState(dataDir, { version: 1, database: previous?.database ?? checkoutDatabaseName(dataDir), ports: p.ports }),
  });
}

test('the first start takes the standard ports when free, the next free ones otherwise; later starts reuse them', async () => {
  const a = checkout('a');
  const first = await plan(a, { busy: new Set([1883, 5000]) });
  assert.deepEqual(first.ports, { backend: 5001, mqtt: 1884, emqx_api: 18083, clickhouse: 18123 });
  assert.deepEqual(first.chosen.sort(), [...services].sort());
  const second = await plan(a);
  assert.deepEqual(second.ports, first.ports, 'recorded ports are reused even when the standard ones are free again');
  assert.deepEqual(second.chosen, []);
});

test('a recorded port held by another program stops the start with the way to move; --move-ports moves only that one', async () => {
  const a = checkout('a');
  const first = await plan(a);
  await assert.rejects(plan(a, { busy: new Set([first.ports.backend]) }), (err: unknown) => {
    assert.ok(err instanceof PortTakenError);
    assert.match(err.message, /Port 5000 of the backend \(REST\).*is in use by another program/);
    assert.match(err.message, /bash scripts\/up\.sh --move-ports/);
    return true;
  });
  assert.deepEqual(readPlatformState(a)?.ports, first.ports, 'a refused start changes nothing');
  const moved = await plan(a, { movePorts: true, busy: new Set([first.ports.backend]) });
  assert.deepEqual(moved.moved, [{ service: 'backend', from: 5000, to: 5001 }]);
  assert.equal(moved.ports.mqtt, first.ports.mqtt, 'ports that are free stay');
  assert.equal(readPlatformState(a)?.ports.backend, 5001, 'the move is recorded');
});

test('a stopped checkout keeps its ports: another checkout neither takes them nor is told they are free', async () => {
  const a = checkout('a');
  const b = checkout('b');
  const first = await plan(a);
  // a is stopped: every port is free on the machine, yet b must not take a's.
  const other = await plan(b);
  for (const service of services) assert.notEqual(other.ports[service], first.ports[service], service);
  // A checkout whose state no longer lists a port releases it (its claim is stale).
  writePlatformState(a, { version: 1, database: 'x', ports: {} });
  rmSync(join(b, 'platform.json'));
  const c = checkout('c');
  assert.equal((await plan(c)).ports.backend, 5000, 'a released port can be taken again');
});

test('checkouts planning at the same moment get distinct ports', async () => {
  const dirs = ['p', 'q', 'r', 's'].map(checkout);
  const plans = await Promise.all(dirs.map((dir) => plan(dir)));
  for (const service of services) {
    const ports = plans.map((p) => p.ports[service]);
    assert.equal(new Set(ports).size, ports.length, `${service}: ${ports.join(', ')}`);
  }
});

test('the default freeness check sees a port bound by another process', async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const a = checkout('a');
  writePlatformState(a, { version: 1, database: 'x', ports: { backend: port } });
  try {
    await assert.rejects(planPorts({ dataDir: a, services: ['backend'], recorded: { backend: port }, registryDir, commit: () => {} }), PortTakenError);
  } finally {
    server.close();
  }
});

test('each checkout has its own database; data folders from before keep the shared one', () => {
  const a = checkout('a');
  const b = checkout('b');
  assert.match(checkoutDatabaseName(a), /^pepeunit_[0-9a-f]{8}$/);
  assert.notEqual(checkoutDatabaseName(a), checkoutDatabaseName(b));
  assert.equal(checkoutDatabaseName(a), checkoutDatabaseName(a), 'stable');
  assert.deepEqual(initialDatabase(a), { database: checkoutDatabaseName(a), legacy: false });
  writeFileSync(join(b, 'secrets.env'), 'PU_SECRET_KEY=x\n');
  assert.deepEqual(initialDatabase(b), { database: 'pepeunit', legacy: true });
});

test('a malformed state file is reported, not overwritten', () => {
  const a = checkout('a');
  writeFileSync(join(a, 'platform.json'), '{ not json');
  assert.throws(() => readPlatformState(a), /platform\.json is not valid JSON/);
});
