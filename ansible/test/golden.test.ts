/**
 * The configuration the roles write for the one-host and the three-host cluster inventories,
 * rendered by Ansible (test/render.yml: the roles' own templates and variables, the test vault)
 * and compared with the reviewed files in test/golden/<inventory>/<host>/<path on the host>. The rendered
 * environment files also go through the services' own configuration loaders, so the role cannot
 * drift from the variables the code reads (common/src/config.ts).
 *
 * After a deliberate change: PU_UPDATE_GOLDEN=1 npm test -- ansible/test/golden
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BACKEND_VARIABLES, INGEST_VARIABLES, loadBackendConfig, loadIngestConfig } from '@pepeunit/common';
import { ansibleDir, requireTools, run, vaultArgs } from './ansible.js';

const goldenRoot = path.join(ansibleDir, 'test', 'golden');
const update = process.env.PU_UPDATE_GOLDEN === '1';
let workDir: string;

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const rel = path.join(prefix, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

/** Parses an environment file the way systemd reads ours: KEY="value" with \\ and \" escapes. */
function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([A-Z_][A-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(line);
    assert.ok(m, `malformed environment line: ${line}`);
    env[m[1] as string] = (m[2] as string).replace(/\\(.)/g, '$1');
  }
  return env;
}

const rendered = new Map<string, string>();

before(async () => {
  requireTools();
  workDir = await mkdtemp(path.join(process.env.PU_TEST_DATA_DIR ?? tmpdir(), 'pu-ansible-render-'));
  // Both inventories at once: they are independent Ansible runs.
  await Promise.all(
    ['one-host', 'cluster'].map(async (inventory) => {
      const out = path.join(workDir, inventory);
      await mkdir(out, { recursive: true });
      const result = await run('ansible-playbook', [
        '-i',
        `inventories/${inventory}`,
        ...vaultArgs,
        '-e',
        `render_dir=${out}`,
        '-e',
        'ansible_connection=local',
        'test/render.yml',
      ]);
      assert.equal(result.code, 0, result.output);
      // <out>/<host>.json holds { "<path on the host>": "<content>" }: lay it out as files.
      const tree = path.join(out, 'tree');
      for (const document of (await readdir(out)).filter((f) => f.endsWith('.json'))) {
        const files = JSON.parse(await readFile(path.join(out, document), 'utf8')) as Record<string, string>;
        for (const [file, content] of Object.entries(files)) {
          const target = path.join(tree, document.slice(0, -'.json'.length), file);
          await mkdir(path.dirname(target), { recursive: true });
          await writeFile(target, content);
        }
      }
      rendered.set(inventory, tree);
      if (update) {
        await rm(path.join(goldenRoot, inventory), { recursive: true, force: true });
        await mkdir(goldenRoot, { recursive: true });
        await cp(tree, path.join(goldenRoot, inventory), { recursive: true });
      }
    }),
  );
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

for (const inventory of ['one-host', 'cluster']) {
  describe(`${inventory} inventory`, () => {
    test('renders exactly the golden files, byte for byte', async () => {
      const out = rendered.get(inventory) as string;
      const golden = path.join(goldenRoot, inventory);
      const files = await listFiles(out);
      assert.deepEqual(files, await listFiles(golden), 'the same files on the same hosts');
      for (const file of files) {
        assert.equal(await readFile(path.join(out, file), 'utf8'), await readFile(path.join(golden, file), 'utf8'), `${inventory}/${file}`);
      }
    });

    test("the backend's environment is accepted by the backend's configuration loader", async () => {
      const out = rendered.get(inventory) as string;
      const known = new Set(BACKEND_VARIABLES.map((v) => v.name));
      for (const file of (await listFiles(out)).filter((f) => f.endsWith('etc/pepeunit/backend.env'))) {
        const env = parseEnvFile(await readFile(path.join(out, file), 'utf8'));
        for (const name of Object.keys(env)) assert.ok(known.has(name), `${file}: ${name} is not a backend variable`);
        // The unit sets the port per replica.
        const config = loadBackendConfig({ ...env, PU_BACKEND_PORT: '5000' });
        assert.equal(config.domain, 'unit.example.com');
        assert.equal(config.secure, true);
        assert.ok(config.postgresUrl.startsWith('postgresql://pepeunit:test-pg%2Fpass%40word@'), 'the password is percent-encoded');
        assert.equal(new URL(config.postgresUrl).password, 'test-pg%2Fpass%40word');
        assert.equal(decodeURIComponent(new URL(config.postgresUrl).password), 'test-pg/pass@word');
        assert.equal(config.emqx.apiKey, 'pepeunit-backend');
        assert.equal(config.clickhouseCluster, inventory === 'cluster' ? 'pepeunit' : '');
      }
    });

    test("the ingest's environment is accepted by the ingest's loader and uses the rules intake", async () => {
      const out = rendered.get(inventory) as string;
      const known = new Set(INGEST_VARIABLES.map((v) => v.name));
      const files = (await listFiles(out)).filter((f) => f.endsWith('etc/pepeunit/ingest.env'));
      assert.ok(files.length > 0);
      for (const file of files) {
        const env = parseEnvFile(await readFile(path.join(out, file), 'utf8'));
        for (const name of Object.keys(env)) assert.ok(known.has(name), `${file}: ${name} is not an ingest variable`);
        const config = loadIngestConfig({ ...env, PU_DP_METRICS_PORT: '9400' });
        assert.equal(config.intakeMode, 'rules');
        assert.equal(config.shareGroup, 'pepeunit-ingest');
        assert.equal(config.domain, 'unit.example.com');
      }
    });
  });
}

describe('what the cluster inventory means', () => {
  test('every ClickHouse host is a replica of one shard with its own macros and a Keeper id', async () => {
    const out = rendered.get('cluster') as string;
    for (const [n, host] of ['pu1', 'pu2', 'pu3'].entries()) {
      const cluster = await readFile(path.join(out, `${host}.example.internal/etc/clickhouse-server/config.d/30-pepeunit-cluster.xml`), 'utf8');
      assert.match(cluster, new RegExp(`<replica>${host}\\.example\\.internal</replica>`));
      assert.equal(cluster.match(/<replica>\s*<host>/g)?.length, 3, 'three replicas in remote_servers');
      const keeper = await readFile(path.join(out, `${host}.example.internal/etc/clickhouse-server/config.d/40-pepeunit-keeper.xml`), 'utf8');
      assert.match(keeper, new RegExp(`<server_id>${n + 1}</server_id>`));
    }
  });

  test('nginx balances every backend replica and lets only the cluster hosts use the internal listener', async () => {
    const site = await readFile(path.join(rendered.get('cluster') as string, 'pu1.example.internal/etc/nginx/sites-available/pepeunit.conf'), 'utf8');
    assert.deepEqual(site.match(/server 10\.0\.0\.1[123]:5000/g), ['server 10.0.0.11:5000', 'server 10.0.0.12:5000', 'server 10.0.0.13:5000']);
    assert.match(site, /listen 10\.0\.0\.11:8080;\n {4}allow 127\.0\.0\.1;\n {4}allow 10\.0\.0\.11;\n {4}allow 10\.0\.0\.12;\n {4}allow 10\.0\.0\.13;\n {4}deny all;/);
  });
});
