/**
 * Units over REST against real Postgres, ClickHouse, broker and git: creation from a
 * registered repository, env.json / schema.json with the unit's own token, firmware archives,
 * state storage, commands, updates to another version, listing and deletion.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { promisify } from 'node:util';
import { unitToken } from '@pepeunit/common';
import { defaultLastValueConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe/index';
import { defaultWorkRoot } from '../../src/services/firmware/index.ts';
import { waitFor } from '@pepeunit/tests/wait';
import { DOMAIN, ENV_V2, SCHEMA_V2, startUnitsEnv, type UnitsTestEnv } from '../firmware/unit-fixture.ts';

const exec = promisify(execFile);
let env: UnitsTestEnv;
let repoUuid: string;
let unit: { uuid: string; token: string };

before(async () => {
  env = await startUnitsEnv('units', { PU_MAX_CIPHER_LENGTH: '20000' });
  repoUuid = (await env.registerRepo({ creator: env.owner, name: 'fan_repo' })).repoUuid;
});
after(async () => {
  await env?.close();
});

const pg = () => env.backend.deps.pg;

async function chCount(query: string, params: Record<string, unknown>): Promise<number> {
  const result = await env.backend.deps.clickhouse.query({ query, query_params: params, format: 'JSONEachRow' });
  const rows = (await result.json()) as { n: string }[];
  return Number(rows[0]!.n);
}

test('create: unit from the repo target version, nodes from schema_example.json, automatic permissions', async () => {
  const events: { nodeUuid: string; action: string }[] = [];
  const stop = env.backend.app.datapipe.onChange((event) => {
    events.push({ nodeUuid: event.nodeUuid, action: event.action });
  });
  const created = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'fan_unit', is_auto_update_from_repo_unit: true },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.name, 'fan_unit');
  assert.equal(created.body.creator_uuid, env.owner.uuid);
  assert.equal(created.body.repo_uuid, repoUuid);
  assert.deepEqual(created.body.unit_nodes, []);
  assert.equal(created.body.cipher_env_dict, undefined, 'encrypted columns never leave');
  unit = { uuid: created.body.uuid, token: unitToken(created.body.uuid, env.backend.deps.config.secretKey) };

  const nodes = await pg().query('SELECT * FROM units_nodes WHERE unit_uuid = $1 ORDER BY type, topic_name', [unit.uuid]);
  assert.deepEqual(
    nodes.rows.map((n) => `${n.type}:${n.topic_name}`),
    ['Input:new_input/pepeunit', 'Input:set_fan_state/pepeunit', 'Output:current_temp/pepeunit', 'Output:raw_output'],
    'nodes of the target version (v2)',
  );
  const defaultPipe = serialiseDataPipeConfig(defaultLastValueConfig());
  for (const node of nodes.rows) {
    assert.equal(node.max_connections, 10);
    assert.equal(node.visibility_level, 'Public');
    assert.equal(node.creator_uuid, env.owner.uuid);
    const pipeable = node.topic_name.endsWith('/pepeunit');
    assert.equal(node.is_data_pipe_active, pipeable, node.topic_name);
    assert.equal(node.data_pipe_yml, pipeable ? defaultPipe : null);
  }
  stop();
  assert.deepEqual(
    events.map((e) => e.action + ':' + e.nodeUuid).sort(),
    nodes.rows.filter((n) => n.is_data_pipe_active).map((n) => 'Update:' + n.uuid).sort(),
    'nodes created with the default LastValue pipe are announced to the DataPipe consumers',
  );
  const perms = await pg().query(
    `SELECT agent_type, resource_type, count(*)::int AS n FROM permissions
      WHERE agent_user_uuid = $1 OR agent_unit_uuid = $2 GROUP BY 1, 2 ORDER BY 1, 2`,
    [env.owner.uuid, unit.uuid],
  );
  assert.deepEqual(
    perms.rows.map((r) => `${r.agent_type}->${r.resource_type}:${r.n}`),
    ['Unit->Repo:1', 'Unit->Unit:1', 'Unit->UnitNode:4', 'User->Repo:1', 'User->Unit:1', 'User->UnitNode:4'],
  );
});

test('create: reference validation errors change nothing', async () => {
  const before = (await pg().query('SELECT count(*)::int AS n FROM units')).rows[0].n;
  const base = { repo_uuid: repoUuid, visibility_level: 'Public', is_auto_update_from_repo_unit: true };
  const dup = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, name: 'fan_unit' } });
  assert.equal(dup.status, 422);
  assert.equal(dup.body.detail, '422: 7: Unit Validation Error: Name is not unique');
  const badName = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, name: 'x y' } });
  assert.match(badName.body.detail, /^422: 7: Unit Validation Error: Name is not correct/);
  const manual = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, name: 'manual_1', is_auto_update_from_repo_unit: false } });
  assert.equal(manual.body.detail, '422: 7: Unit Validation Error: Unit updated manually requires branch and commit to be filled out');
  const wrongCommit = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { ...base, name: 'manual_2', is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: env.sample.bare },
  });
  assert.equal(wrongCommit.body.detail, `422: 5: Git Repo Validation Error: Commit ${env.sample.bare} not in branch main`);
  const wrongBranch = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { ...base, name: 'manual_3', is_auto_update_from_repo_unit: false, repo_branch: 'nope', repo_commit: env.sample.v1 },
  });
  assert.match(wrongBranch.body.detail, /^422: 5: Git Repo Validation Error: Branch nope not found, available: \[/);
  const brokenEnv = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { ...base, name: 'manual_4', is_auto_update_from_repo_unit: false, repo_branch: 'broken', repo_commit: env.sample.broken },
  });
  assert.match(brokenEnv.body.detail, /^422: 9: JSON Decode Error: Data env_example.json is invalid/);
  const internalRepo = (await env.registerRepo({ creator: env.owner, name: 'internal_repo', visibility: 'Internal' })).repoUuid;
  const lessRestrictive = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, repo_uuid: internalRepo, name: 'pub_unit' } });
  assert.equal(lessRestrictive.body.detail, '422: 2: Validation Error: The visibility level of the parent object Repo is lower than that of the child object Unit');
  const noBranchRepo = (await env.registerRepo({ creator: env.owner, name: 'nobranch_repo', defaultBranch: null })).repoUuid;
  const noBranch = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, repo_uuid: noBranchRepo, name: 'nb_unit' } });
  assert.match(noBranch.body.detail, /^422: 5: Git Repo Validation Error: Branch None not found/);
  const missingRepo = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, repo_uuid: '00000000-0000-4000-8000-000000000000', name: 'ghost_unit' } });
  assert.equal(missingRepo.status, 422);
  const schemaError = await env.call('POST', '/units', { token: env.owner.token, body: { ...base, visibility_level: 'Secret', name: 'schema_err' } });
  assert.equal(schemaError.status, 422);
  assert.ok(Array.isArray(schemaError.body.detail));
  const anonymous = await env.call('POST', '/units', { body: { ...base, name: 'anon_unit' } });
  assert.equal(anonymous.status, 403);
  assert.equal((await pg().query('SELECT count(*)::int AS n FROM units')).rows[0].n, before);
});

test('env.json: the unit fetches it with its own token; other users and anonymous callers are refused', async () => {
  const got = await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token });
  assert.equal(got.status, 200, JSON.stringify(got.body));
  const envJson = got.body;
  assert.equal(envJson.PU_AUTH_TOKEN, unit.token);
  assert.ok(envJson.PU_AUTH_TOKEN.length > 100);
  assert.equal(envJson.PU_COMMIT_VERSION, env.sample.v2);
  assert.equal(envJson.PU_DOMAIN, DOMAIN, 'generated values override the example');
  assert.equal(envJson.PU_MIN_LOG_LEVEL, 'Debug');
  assert.equal(envJson.WIFI_SSID, ENV_V2.WIFI_SSID);
  assert.equal(envJson.NEW_KEY, 1);
  assert.equal(envJson.PU_HTTP_TYPE, 'http');
  assert.equal(envJson.PU_APP_PREFIX, '/pepeunit');
  assert.equal(envJson.PU_API_ACTUAL_PREFIX, '/api/v1');
  assert.equal(Buffer.from(envJson.PU_SECRET_KEY, 'base64').length, 32);
  assert.equal(Buffer.from(envJson.PU_ENCRYPT_KEY, 'base64').length, 32);
  for (const key of ['PU_MQTT_HOST', 'PU_MQTT_PORT', 'PU_MQTT_PING_INTERVAL', 'PU_MQTT_KEEPALIVE', 'PU_STATE_SEND_INTERVAL', 'PU_MAX_LOG_LENGTH']) {
    assert.ok(key in envJson, key);
  }
  assert.equal((await env.call('GET', `/units/env/${unit.uuid}`, { token: env.owner.token })).status, 200);
  const foreign = await env.call('GET', `/units/env/${unit.uuid}`, { token: env.other.token });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.body.detail, '403: 1: No Access: Agent is not the creator of this entity');
  assert.equal((await env.call('GET', `/units/env/${unit.uuid}`)).status, 403);
  const again = await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token });
  assert.notEqual(again.body.PU_SECRET_KEY, envJson.PU_SECRET_KEY, 'nothing stored yet: fresh keys on every call');
});

test('env.json: set (unknown keys dropped, stored encrypted), keys stable afterwards, reset gives new keys', async () => {
  const set = await env.call('PATCH', `/units/env/${unit.uuid}`, {
    token: env.owner.token,
    body: { env_json_string: JSON.stringify({ WIFI_SSID: 'home_net', test: '', PU_AUTH_TOKEN: 'forged' }) },
  });
  assert.equal(set.status, 204, JSON.stringify(set.body));
  const stored = (await pg().query('SELECT cipher_env_dict FROM units WHERE uuid = $1', [unit.uuid])).rows[0].cipher_env_dict as string;
  assert.ok(stored && !stored.includes('home_net'), 'encrypted at rest');
  const plain = JSON.parse(env.backend.app.cipher.decrypt(stored));
  assert.equal(plain.WIFI_SSID, 'home_net');
  assert.equal(plain.PU_COMMIT_VERSION, undefined, 'PU_COMMIT_VERSION is not stored');
  const first = (await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token })).body;
  const second = (await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token })).body;
  assert.equal(first.WIFI_SSID, 'home_net');
  assert.equal('test' in first, false);
  assert.equal(first.PU_AUTH_TOKEN, unit.token, 'the token cannot be overridden');
  assert.equal(first.PU_SECRET_KEY, second.PU_SECRET_KEY);
  const bad = await env.call('PATCH', `/units/env/${unit.uuid}`, { token: env.owner.token, body: { env_json_string: '{not json' } });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.detail, '422: 9: JSON Decode Error: Data env.json is invalid');
  assert.equal((await env.call('PATCH', `/units/env/${unit.uuid}`, { token: unit.token, body: { env_json_string: '{}' } })).status, 403, 'units cannot set their env');
  assert.equal((await env.call('PATCH', `/units/env/${unit.uuid}`, { token: env.other.token, body: { env_json_string: '{}' } })).status, 403);
  assert.equal((await env.call('DELETE', `/units/env/${unit.uuid}`, { token: env.owner.token })).status, 204);
  const reset = (await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token })).body;
  assert.notEqual(reset.PU_SECRET_KEY, first.PU_SECRET_KEY);
  assert.equal(reset.WIFI_SSID, ENV_V2.WIFI_SSID);
  // keep a stored env for the later version-change test
  await env.call('PATCH', `/units/env/${unit.uuid}`, { token: env.owner.token, body: { env_json_string: JSON.stringify({ WIFI_SSID: 'kept' }) } });
});

test('schema.json: physical topics from the common builders; users who do not own the unit are refused', async () => {
  const got = await env.call('GET', `/units/get_current_schema/${unit.uuid}`, { token: unit.token });
  assert.equal(got.status, 200, JSON.stringify(got.body));
  const nodes = (await pg().query('SELECT uuid, topic_name FROM units_nodes WHERE unit_uuid = $1', [unit.uuid])).rows;
  const node = (name: string) => nodes.find((n) => n.topic_name === name)!.uuid;
  assert.deepEqual(got.body, {
    input_base_topic: Object.fromEntries(SCHEMA_V2.input_base_topic.map((t) => [t, [`${DOMAIN}/input_base_topic/${unit.uuid}/${t}`]])),
    output_base_topic: Object.fromEntries(SCHEMA_V2.output_base_topic.map((t) => [t, [`${DOMAIN}/output_base_topic/${unit.uuid}/${t}`]])),
    input_topic: {
      'set_fan_state/pepeunit': [`${DOMAIN}/${node('set_fan_state/pepeunit')}/pepeunit`],
      'new_input/pepeunit': [`${DOMAIN}/${node('new_input/pepeunit')}/pepeunit`],
    },
    output_topic: {
      'current_temp/pepeunit': [`${DOMAIN}/${node('current_temp/pepeunit')}/pepeunit`],
      raw_output: [`${DOMAIN}/${node('raw_output')}`],
    },
  });
  assert.equal((await env.call('GET', `/units/get_current_schema/${unit.uuid}`, { token: env.other.token })).status, 403);
  const target = await env.call('GET', `/units/get_target_version/${unit.uuid}`, { token: unit.token });
  assert.deepEqual(target.body, { commit: env.sample.v2, tag: null });
});

async function extract(format: 'zip' | 'tar', data: Buffer): Promise<string> {
  const dir = await mkdtemp(join(env.root, `fw-${format}-`));
  const file = join(dir, `archive.${format}`);
  await writeFile(file, data);
  const out = join(dir, 'out');
  if (format === 'zip') await exec('unzip', ['-q', file, '-d', out]);
  else {
    await exec('mkdir', ['-p', out]);
    await exec('tar', ['-xf', file, '-C', out]);
  }
  return out;
}

async function assertFirmwareTree(dir: string): Promise<void> {
  const names = (await readdir(dir)).sort();
  assert.deepEqual(names, ['env.json', 'lib', 'main.py', 'schema.json'], '.pepeignore removed README, LICENSE, docs, examples, toml');
  const envText = await readFile(join(dir, 'env.json'), 'utf8');
  assert.match(envText, /^\{\n {4}"/, '4-space indented JSON');
  const envJson = JSON.parse(envText);
  assert.equal(envJson.PU_AUTH_TOKEN, unit.token);
  assert.ok(envJson.PU_AUTH_TOKEN.length > 100);
  assert.equal(envJson.PU_COMMIT_VERSION, env.sample.v2);
  assert.equal(envJson.WIFI_SSID, 'kept');
  const schema = JSON.parse(await readFile(join(dir, 'schema.json'), 'utf8'));
  assert.deepEqual(Object.keys(schema.input_topic).sort(), ['new_input/pepeunit', 'set_fan_state/pepeunit']);
  assert.equal(await readFile(join(dir, 'main.py'), 'utf8'), 'print("fan")\n');
}

test('firmware: zip, tar and tgz (wbits 9, level 9) unpack to the repository minus .pepeignore plus env.json and schema.json', async () => {
  const zip = await env.call('GET', `/units/firmware/zip/${unit.uuid}`, { token: unit.token });
  assert.equal(zip.status, 200);
  assert.equal(zip.headers['content-type'], 'application/zip');
  await assertFirmwareTree(await extract('zip', zip.raw));

  const tar = await env.call('GET', `/units/firmware/tar/${unit.uuid}`, { token: env.owner.token });
  assert.equal(tar.status, 200);
  await assertFirmwareTree(await extract('tar', tar.raw));

  const tgz = await env.call('GET', `/units/firmware/tgz/${unit.uuid}?wbits=9&level=9`, { token: unit.token });
  assert.equal(tgz.status, 200);
  const dir = await mkdtemp(join(env.root, 'fw-tgz-'));
  await writeFile(join(dir, 'fw.tgz'), tgz.raw);
  await exec('python3', ['-c', 'import zlib,sys; open(sys.argv[2],"wb").write(zlib.decompress(open(sys.argv[1],"rb").read(), 9))', join(dir, 'fw.tgz'), join(dir, 'fw.tar')]);
  await assertFirmwareTree(await extract('tar', await readFile(join(dir, 'fw.tar'))));

  const defaults = await env.call('GET', `/units/firmware/tgz/${unit.uuid}`, { token: unit.token });
  assert.equal(defaults.raw[0]! >> 4, 1, 'default wbits 9 (2^9 window)');

  const bad = await env.call('GET', `/units/firmware/tgz/${unit.uuid}?wbits=35`, { token: unit.token });
  assert.equal(bad.status, 422);
  assert.match(bad.body.detail, /^422: 7: Unit Validation Error: Wbits 35 is not valid/);
  const badLevel = await env.call('GET', `/units/firmware/tgz/${unit.uuid}?level=13`, { token: unit.token });
  assert.match(badLevel.body.detail, /^422: 7: Unit Validation Error: Level 13 is not valid/);
  assert.equal((await env.call('GET', `/units/firmware/zip/${unit.uuid}`, { token: env.other.token })).status, 403);

  await waitFor(async () => (await buildLeftovers()).length === 0, { what: 'temporary build directories and archive files removed' });
});

/** Build directories (`<uuid>`) and archive files (`<uuid>.<format>`) left in the work root. */
async function buildLeftovers(): Promise<string[]> {
  const names = await readdir(defaultWorkRoot()).catch(() => [] as string[]);
  return names.filter((name) => /^[0-9a-f-]{36}(\.(zip|tar|tgz))?$/.test(name));
}

/**
 * GET over a raw socket as the MicroPython client does (HTTP/1.1, Connection: close, the body
 * written to a file as it arrives, chunked transfer encoding never decoded).
 */
async function rawGet(port: number, path: string, token: string): Promise<{ headers: Map<string, string>; body: Buffer }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nx-auth-token: ${token}\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const end = raw.indexOf('\r\n\r\n');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  assert.match(lines[0] ?? '', /^HTTP\/1\.1 200 /);
  const headers = new Map(lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as [string, string]));
  return { headers, body: raw.subarray(end + 4) };
}

test('firmware archives carry Content-Length: a raw socket reader that never decodes chunks saves archives that unpack', async () => {
  await env.backend.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (env.backend.app.server.address() as net.AddressInfo).port;
  for (const format of ['zip', 'tar', 'tgz'] as const) {
    const { headers, body } = await rawGet(port, `/pepeunit/api/v1/units/firmware/${format}/${unit.uuid}${format === 'tgz' ? '?wbits=9&level=9' : ''}`, unit.token);
    assert.equal(headers.get('transfer-encoding'), undefined, `${format}: not chunked`);
    assert.equal(Number(headers.get('content-length')), body.length, `${format}: Content-Length is the body length`);
    let archive = body;
    if (format === 'tgz') archive = inflateSync(body, { windowBits: 9 });
    await assertFirmwareTree(await extract(format === 'zip' ? 'zip' : 'tar', archive));
  }
  await waitFor(async () => (await buildLeftovers()).length === 0, { what: 'archive files removed after sending' });
});

test('state storage: encrypted round trip, "" clears, too long is a CipherError', async () => {
  assert.equal((await env.call('GET', `/units/get_state_storage/${unit.uuid}`, { token: unit.token })).body, '');
  const set = await env.call('POST', `/units/set_state_storage/${unit.uuid}`, { token: unit.token, body: { state: '{"mode": "auto"}' } });
  assert.equal(set.status, 204);
  const stored = (await pg().query('SELECT cipher_state_storage FROM units WHERE uuid = $1', [unit.uuid])).rows[0].cipher_state_storage;
  assert.ok(stored && !stored.includes('auto'));
  const got = await env.call('GET', `/units/get_state_storage/${unit.uuid}`, { token: unit.token });
  assert.equal(got.status, 200);
  assert.equal(got.raw.toString(), JSON.stringify('{"mode": "auto"}'), 'a JSON string');
  assert.equal((await env.call('GET', `/units/get_state_storage/${unit.uuid}`, { token: env.other.token })).status, 403);
  const tooLong = await env.call('POST', `/units/set_state_storage/${unit.uuid}`, { token: unit.token, body: { state: 'x'.repeat(20001) } });
  assert.equal(tooLong.status, 422);
  assert.match(tooLong.body.detail, /^422: 12: Cipher Error: /);
  assert.equal((await env.call('GET', `/units/get_state_storage/${unit.uuid}`, { token: unit.token })).body, '{"mode": "auto"}', 'unchanged');
  await env.call('POST', `/units/set_state_storage/${unit.uuid}`, { token: unit.token, body: { state: '' } });
  assert.equal((await pg().query('SELECT cipher_state_storage FROM units WHERE uuid = $1', [unit.uuid])).rows[0].cipher_state_storage, null);
});

test('log_list without limit: one page of PU_MAX_PAGINATION_SIZE, the total in count and next_offset, never a silent cut', async () => {
  const max = env.backend.deps.config.maxPaginationSize;
  const total = max + 37;
  const base = Date.UTC(2026, 0, 1);
  await env.db.clickhouse.insert({
    table: 'unit_logs',
    format: 'JSONEachRow',
    values: Array.from({ length: total }, (_, i) => ({
      uuid: randomUUID(),
      level: 'Info',
      unit_uuid: unit.uuid,
      text: `paged ${i}`,
      create_datetime: new Date(base + i * 1000).toISOString().replace('T', ' ').replace('Z', ''),
      expiration_datetime: Math.floor(Date.now() / 1000) + 3600,
    })),
  });
  const first = await env.call('GET', `/units/log_list/?uuid=${unit.uuid}&order_by_create_date=asc`, { token: env.owner.token });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(first.body.unit_logs.length, max);
  assert.equal(first.body.count, total, 'count is the total, not the page');
  assert.equal(first.body.next_offset, max);
  const rest = await env.call('GET', `/units/log_list/?uuid=${unit.uuid}&order_by_create_date=asc&offset=${first.body.next_offset}`, { token: env.owner.token });
  assert.equal(rest.body.unit_logs.length, total - max);
  assert.equal(rest.body.next_offset, null, 'the last page says so');
  const texts = [...first.body.unit_logs, ...rest.body.unit_logs].map((l: { text: string }) => l.text);
  assert.deepEqual(texts, Array.from({ length: total }, (_, i) => `paged ${i}`), 'every row exactly once, in order');
  await env.db.clickhouse.command({ query: 'ALTER TABLE unit_logs DELETE WHERE unit_uuid = {u:UUID}', query_params: { u: unit.uuid }, clickhouse_settings: { mutations_sync: '1' } });
});

test('commands reach a subscriber on the input base topic; Update records RequestSent; LogSync clears ClickHouse logs', async () => {
  const sub = await env.subscribe(`${DOMAIN}/input_base_topic/${unit.uuid}/+/pepeunit`);
  const update = await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=Update`, { token: env.owner.token });
  assert.equal(update.status, 204, JSON.stringify(update.body));
  await sub.waitFor(1);
  assert.deepEqual(sub.messages[0], {
    topic: `${DOMAIN}/input_base_topic/${unit.uuid}/update/pepeunit`,
    payload: `{"COMMAND": "Update", "PU_COMMIT_VERSION": "${env.sample.v2}"}`,
  });
  const row = (await pg().query('SELECT firmware_update_status, last_firmware_update_datetime FROM units WHERE uuid = $1', [unit.uuid])).rows[0];
  assert.equal(row.firmware_update_status, 'RequestSent');
  assert.ok(row.last_firmware_update_datetime);

  const ch = env.backend.deps.clickhouse;
  await ch.insert({
    table: 'unit_logs',
    values: [
      { uuid: crypto.randomUUID(), level: 'Info', unit_uuid: unit.uuid, text: 'a', create_datetime: '2026-01-01 00:00:00.000', expiration_datetime: '2099-01-01 00:00:00' },
      { uuid: crypto.randomUUID(), level: 'Info', unit_uuid: '00000000-0000-4000-8000-000000000001', text: 'other', create_datetime: '2026-01-01 00:00:00.000', expiration_datetime: '2099-01-01 00:00:00' },
    ],
    format: 'JSONEachRow',
  });
  assert.equal(await chCount('SELECT count() AS n FROM unit_logs WHERE unit_uuid = {u:UUID}', { u: unit.uuid }), 1);
  for (const command of ['EnvUpdate', 'SchemaUpdate', 'LogSync']) {
    const res = await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=${command}`, { token: unit.token });
    assert.equal(res.status, 204, command);
  }
  await sub.waitFor(4);
  assert.deepEqual(
    sub.messages.slice(1).map((m) => [m.topic.split('/')[3], m.payload]),
    [
      ['env_update', '{"COMMAND": "EnvUpdate"}'],
      ['schema_update', '{"COMMAND": "SchemaUpdate"}'],
      ['log_sync', '{"COMMAND": "LogSync"}'],
    ],
  );
  assert.equal(await chCount('SELECT count() AS n FROM unit_logs WHERE unit_uuid = {u:UUID}', { u: unit.uuid }), 0, 'LogSync deleted the unit logs');
  assert.equal(await chCount("SELECT count() AS n FROM unit_logs WHERE text = 'other'", {}), 1, 'other units keep theirs');
  assert.equal((await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=Reboot`, { token: unit.token })).status, 422);
  assert.equal((await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=Update`, { token: env.other.token })).status, 403);
  await sub.close();
});

test('update: manual pin to v1 reconciles nodes and env, bad commits are refused with nothing changed', async () => {
  const nodesBefore = (await pg().query('SELECT uuid, topic_name FROM units_nodes WHERE unit_uuid = $1', [unit.uuid])).rows;
  const kept = nodesBefore.find((n) => n.topic_name === 'set_fan_state/pepeunit')!.uuid;
  const notOwner = await env.call('PATCH', `/units/${unit.uuid}`, { token: env.other.token, body: { name: 'stolen_unit' } });
  assert.equal(notOwner.status, 403);
  const badCommit = await env.call('PATCH', `/units/${unit.uuid}`, {
    token: env.owner.token,
    body: { is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: 'test' },
  });
  assert.equal(badCommit.status, 422);
  const brokenEnv = await env.call('PATCH', `/units/${unit.uuid}`, {
    token: env.owner.token,
    body: { is_auto_update_from_repo_unit: false, repo_branch: 'broken', repo_commit: env.sample.broken },
  });
  assert.equal(brokenEnv.status, 422);
  const still = (await pg().query('SELECT is_auto_update_from_repo_unit, repo_commit FROM units WHERE uuid = $1', [unit.uuid])).rows[0];
  assert.deepEqual(still, { is_auto_update_from_repo_unit: true, repo_commit: null }, 'refused updates changed nothing');

  const removedPipe = nodesBefore.find((n) => n.topic_name === 'new_input/pepeunit')!.uuid;
  const events: string[] = [];
  const stop = env.backend.app.datapipe.onChange((event) => {
    events.push(`${event.action}:${event.nodeUuid}:${event.node?.topic_name}`);
  });
  const pinned = await env.call('PATCH', `/units/${unit.uuid}`, {
    token: env.owner.token,
    body: { is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: env.sample.v1, name: 'fan_unit_v1', visibility_level: 'Private' },
  });
  stop();
  assert.equal(pinned.status, 200, JSON.stringify(pinned.body));
  assert.deepEqual(events, [`Delete:${removedPipe}:new_input/pepeunit`], 'the removed piped node is announced with its row; raw_input has no pipe');
  assert.equal(pinned.body.name, 'fan_unit_v1');
  assert.equal(pinned.body.repo_commit, env.sample.v1);
  const nodesAfter = (await pg().query('SELECT uuid, topic_name, visibility_level FROM units_nodes WHERE unit_uuid = $1 ORDER BY topic_name', [unit.uuid])).rows;
  assert.deepEqual(nodesAfter.map((n) => n.topic_name), ['current_temp/pepeunit', 'raw_input', 'raw_output', 'set_fan_state/pepeunit']);
  assert.ok(nodesAfter.some((n) => n.uuid === kept), 'nodes whose names stay are kept');
  assert.ok(nodesAfter.every((n) => n.visibility_level === 'Private'), 'nodes raised to the unit visibility');
  const stored = JSON.parse(env.backend.app.cipher.decrypt((await pg().query('SELECT cipher_env_dict FROM units WHERE uuid = $1', [unit.uuid])).rows[0].cipher_env_dict));
  assert.equal(stored.WIFI_SSID, 'kept', 'stored values survive the version change');
  assert.equal('NEW_KEY' in stored, false, 'keys the target no longer declares are dropped');
  const envJson = (await env.call('GET', `/units/env/${unit.uuid}`, { token: unit.token })).body;
  assert.equal(envJson.PU_COMMIT_VERSION, env.sample.v1);

  // v1 does not list log_sync: the command is a silent no-op
  const sub = await env.subscribe(`${DOMAIN}/input_base_topic/${unit.uuid}/+/pepeunit`);
  const noop = await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=LogSync`, { token: unit.token });
  assert.equal(noop.status, 204);
  // Barrier: a message the backend publishes after the command on the same connection; had the
  // command been published, it would arrive first.
  await env.backend.app.mqtt.publishAsync(`${DOMAIN}/input_base_topic/${unit.uuid}/barrier/pepeunit`, 'barrier');
  await sub.waitFor(1);
  assert.deepEqual(sub.messages.map((m) => m.payload), ['barrier']);
  await sub.close();

  // the corrupted stored env is regenerated on a version change (reference test)
  const cipher = env.backend.app.cipher;
  const corrupted = { ...stored };
  delete corrupted.PU_SECRET_KEY;
  await pg().query('UPDATE units SET cipher_env_dict = $2 WHERE uuid = $1', [unit.uuid, cipher.encrypt(JSON.stringify(corrupted))]);
  const back = await env.call('PATCH', `/units/${unit.uuid}`, { token: env.owner.token, body: { is_auto_update_from_repo_unit: true } });
  assert.equal(back.status, 200, JSON.stringify(back.body));
  const regenerated = JSON.parse(cipher.decrypt((await pg().query('SELECT cipher_env_dict FROM units WHERE uuid = $1', [unit.uuid])).rows[0].cipher_env_dict));
  assert.ok(regenerated.PU_SECRET_KEY, 'missing generated key filled in');
  assert.equal(regenerated.NEW_KEY, 1, 'v2 keys come back');
  assert.equal(regenerated.WIFI_SSID, 'kept');
});

test('get: visibility rules for anonymous, users and units', async () => {
  const privateUnit = await env.call('GET', `/units/${unit.uuid}`);
  assert.equal(privateUnit.status, 403, 'Bot cannot see a Private unit');
  assert.equal((await env.call('GET', `/units/${unit.uuid}`, { token: env.other.token })).status, 403);
  assert.equal((await env.call('GET', `/units/${unit.uuid}`, { token: env.owner.token })).status, 200);
  assert.equal((await env.call('GET', `/units/${unit.uuid}`, { token: unit.token })).status, 200);
  await env.call('PATCH', `/units/${unit.uuid}`, { token: env.owner.token, body: { visibility_level: 'Public' } });
  const pub = await env.call('GET', `/units/${unit.uuid}`);
  assert.equal(pub.status, 200);
  assert.equal(pub.body.visibility_level, 'Public');
  const missing = await env.call('GET', '/units/00000000-0000-4000-8000-000000000000', { token: env.owner.token });
  assert.equal(missing.status, 422);
  assert.equal((await env.call('GET', '/units/not-a-uuid', { token: env.owner.token })).status, 422);
});

test('list: filters of §5.5; with nodes included, a unit without nodes does not vanish', async () => {
  const bareUnit = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'bare_unit', is_auto_update_from_repo_unit: false, repo_branch: 'bare', repo_commit: env.sample.bare },
  });
  assert.equal(bareUnit.status, 201, JSON.stringify(bareUnit.body));
  const otherRepo = (await env.registerRepo({ creator: env.other, name: 'other_repo' })).repoUuid;
  const otherUnit = await env.call('POST', '/units', {
    token: env.other.token,
    body: { repo_uuid: otherRepo, visibility_level: 'Private', name: 'other_unit', is_auto_update_from_repo_unit: true },
  });
  assert.equal(otherUnit.status, 201);

  const mine = await env.call('GET', `/units?creator_uuid=${env.owner.uuid}&order_by_unit_name=asc`, { token: env.owner.token });
  assert.equal(mine.body.count, 2);
  const withNodes = await env.call('GET', `/units?repo_uuid=${repoUuid}&is_include_output_unit_nodes=true`, { token: env.owner.token });
  assert.equal(withNodes.body.count, 2);
  const byName = Object.fromEntries(withNodes.body.units.map((u: any) => [u.name, u.unit_nodes.length]));
  assert.deepEqual(byName, { bare_unit: 0, fan_unit_v1: 4 });
  const outputsOnly = await env.call('GET', `/units?repo_uuid=${repoUuid}&is_include_output_unit_nodes=true&unit_node_type=Output`, { token: env.owner.token });
  for (const u of outputsOnly.body.units) for (const n of u.unit_nodes) assert.equal(n.type, 'Output');
  const someNode = withNodes.body.units.find((u: any) => u.name === 'fan_unit_v1').unit_nodes[0];
  const byNode = await env.call('GET', `/units?is_include_output_unit_nodes=true&unit_node_uuids=${someNode.uuid}`, { token: unit.token });
  assert.equal(byNode.status, 200);
  assert.deepEqual(byNode.body.units.map((u: any) => [u.name, u.unit_nodes.map((n: any) => n.uuid)]), [['fan_unit_v1', [someNode.uuid]]]);

  const search = await env.call('GET', '/units?search_string=bare', { token: env.owner.token });
  assert.deepEqual(search.body.units.map((u: any) => u.name), ['bare_unit']);
  const anonymous = await env.call('GET', '/units');
  assert.ok(!anonymous.body.units.some((u: any) => u.name === 'other_unit'), 'Bot never sees Private units');
  const ownerView = await env.call('GET', '/units', { token: env.owner.token });
  assert.ok(!ownerView.body.units.some((u: any) => u.name === 'other_unit'), "another owner's Private unit is hidden");
  const otherView = await env.call('GET', '/units?visibility_level=Private', { token: env.other.token });
  assert.deepEqual(otherView.body.units.map((u: any) => u.name), ['other_unit']);
  const manual = await env.call('GET', '/units?is_auto_update_from_repo_unit=false', { token: env.owner.token });
  assert.deepEqual(manual.body.units.map((u: any) => u.name), ['bare_unit']);
  const paged = await env.call('GET', '/units?limit=1&offset=0', { token: env.owner.token });
  assert.equal(paged.body.units.length, 1);
  assert.ok(paged.body.count >= 2);
  assert.equal((await env.call('GET', '/units?limit=501', { token: env.owner.token })).status, 422);
});

test('delete: removes the unit, its nodes, and its ClickHouse rows (logs and DataPipe tables) only', async () => {
  const target = (await pg().query("SELECT uuid FROM units WHERE name = 'bare_unit'")).rows[0].uuid as string;
  const victim = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'victim_unit', is_auto_update_from_repo_unit: true },
  });
  const victimNodes = (await pg().query('SELECT uuid FROM units_nodes WHERE unit_uuid = $1', [victim.body.uuid])).rows.map((r) => r.uuid as string);
  const pipedVictimNodes = (await pg().query('SELECT uuid FROM units_nodes WHERE unit_uuid = $1 AND is_data_pipe_active', [victim.body.uuid])).rows.map((r) => r.uuid as string);
  assert.equal(pipedVictimNodes.length, 3, 'the three /pepeunit topics of v2 got the default pipe');
  const survivorNode = (await pg().query('SELECT uuid FROM units_nodes WHERE unit_uuid = $1 LIMIT 1', [unit.uuid])).rows[0].uuid as string;
  const ch = env.backend.deps.clickhouse;
  const now = '2026-01-01 00:00:00.000';
  for (const node of [victimNodes[0]!, survivorNode]) {
    await ch.insert({ table: 'n_last_entry', values: [{ unit_node_uuid: node, state: '1', state_type: 'Text', create_datetime: now, max_count: 10, size: 1 }], format: 'JSONEachRow' });
    await ch.insert({ table: 'window_entry', values: [{ unit_node_uuid: node, state: '1', state_type: 'Text', create_datetime: now, expiration_datetime: '2099-01-01 00:00:00', size: 1 }], format: 'JSONEachRow' });
    await ch.insert({
      table: 'aggregation_entry',
      values: [{ unit_node_uuid: node, state: 1.5, aggregation_type: 'Avg', time_window_size: 60, create_datetime: now, start_window_datetime: now, end_window_datetime: now }],
      format: 'JSONEachRow',
    });
  }
  await ch.insert({
    table: 'unit_logs',
    values: [{ uuid: crypto.randomUUID(), level: 'Error', unit_uuid: victim.body.uuid, text: 'bye', create_datetime: now, expiration_datetime: '2099-01-01 00:00:00' }],
    format: 'JSONEachRow',
  });
  assert.equal((await env.call('DELETE', `/units/${victim.body.uuid}`, { token: env.other.token })).status, 403);
  const events: string[] = [];
  const stop = env.backend.app.datapipe.onChange((event) => {
    events.push(`${event.action}:${event.nodeUuid}`);
  });
  const deleted = await env.call('DELETE', `/units/${victim.body.uuid}`, { token: env.owner.token });
  stop();
  assert.equal(deleted.status, 204);
  assert.deepEqual(events.sort(), pipedVictimNodes.map((uuid) => `Delete:${uuid}`).sort(), 'nodes with an active pipe are announced as deleted');
  assert.equal((await pg().query('SELECT count(*)::int AS n FROM units_nodes WHERE unit_uuid = $1', [victim.body.uuid])).rows[0].n, 0);
  assert.equal(await chCount('SELECT count() AS n FROM unit_logs WHERE unit_uuid = {u:UUID}', { u: victim.body.uuid }), 0);
  for (const table of ['n_last_entry', 'window_entry', 'aggregation_entry']) {
    assert.equal(await chCount(`SELECT count() AS n FROM ${table} WHERE unit_node_uuid IN {n:Array(UUID)}`, { n: victimNodes }), 0, table);
    assert.equal(await chCount(`SELECT count() AS n FROM ${table} WHERE unit_node_uuid = {n:UUID}`, { n: survivorNode }), 1, `${table} of other units kept`);
  }
  const gone = await env.call('GET', `/units/${victim.body.uuid}`, { token: env.owner.token });
  assert.equal(gone.status, 422);
  assert.equal(gone.body.detail, `422: 2: Validation Error: Unit ${victim.body.uuid} does not exist`);
  assert.equal((await env.call('DELETE', `/units/${target}`, { token: env.owner.token })).status, 204);
});

test('unitsFirmware decorator: repo-wide update syncs auto-updating units and sends Update', async () => {
  const sub = await env.subscribe(`${DOMAIN}/input_base_topic/+/update/pepeunit`);
  const result = await env.backend.app.unitsFirmware.updateUnitsFirmware(repoUuid);
  assert.equal(result.failed, 0, JSON.stringify(result.errors));
  assert.equal(result.total, 1, 'only auto-updating units of the repo');
  await sub.waitFor(1);
  assert.equal(sub.messages[0]!.topic, `${DOMAIN}/input_base_topic/${unit.uuid}/update/pepeunit`);
  await sub.close();
});

test('MQTT down: commands answer MqttError 422 and an Update records status Error', async () => {
  await env.backend.deps.mqtt.endAsync(true);
  const res = await env.call('POST', `/units/send_command_to_input_base_topic/${unit.uuid}?command=Update`, { token: env.owner.token });
  assert.equal(res.status, 422);
  assert.equal(res.body.detail, '422: 10: MQTT Error: MQTT client is disconnected');
  const row = (await pg().query('SELECT firmware_update_status, firmware_update_error FROM units WHERE uuid = $1', [unit.uuid])).rows[0];
  assert.equal(row.firmware_update_status, 'Error');
  assert.match(row.firmware_update_error, /MQTT client is disconnected/);
  // updates of the unit itself still succeed (the command failure is ignored)
  const renamed = await env.call('PATCH', `/units/${unit.uuid}`, { token: env.owner.token, body: { name: 'fan_unit_off' } });
  assert.equal(renamed.status, 200);
});
