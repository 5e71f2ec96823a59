/**
 * Automatic updates (issue 9): units with `is_auto_update_from_repo_unit` get `Update` when a
 * registry sync or a repo change moves their target version, once per target; manual units never
 * do; the periodic safety net re-sends to units whose update failed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { git } from '../git/helpers.ts';
import { DOMAIN, startUnitsEnv, type UnitsTestEnv } from '../firmware/unit-fixture.ts';
import { waitFor } from '@pepeunit/tests/wait';

let env: UnitsTestEnv;
let registryUuid = '';
let repoUuid = '';
let autoUnit = '';
let manualUnit = '';
let updates: Awaited<ReturnType<UnitsTestEnv['subscribe']>>;

const work = () => join(env.root, 'unit-work');
const unitRow = async (uuid: string) => (await env.backend.deps.pg.query('SELECT * FROM units WHERE uuid = $1', [uuid])).rows[0];
const updatesFor = (uuid: string) => updates.messages.filter((m) => m.topic === `${DOMAIN}/input_base_topic/${uuid}/update/pepeunit`).map((m) => JSON.parse(m.payload) as { COMMAND: string; PU_COMMIT_VERSION: string });

/** A new commit on main in the sample repository (tagged when `tag` is given), pushed to the bare remote. */
async function pushCommit(name: string, tag?: string): Promise<string> {
  await writeFile(join(work(), 'main.py'), `print("${name}")\n`);
  await git(work(), 'commit', '--quiet', '-am', name);
  if (tag) await git(work(), 'tag', tag);
  await git(work(), 'push', '--quiet', join(env.root, 'unit.git'), 'main', '--tags');
  return git(work(), 'rev-parse', 'HEAD');
}

async function syncRegistry(): Promise<void> {
  const outcome = await env.backend.app.registrySync.syncRegistry(registryUuid, { type: 'backend' }, 'backend');
  assert.equal(outcome.status, 'Updated', String(outcome.error));
  await env.backend.unitsAutoUpdate.idle();
}

before(async () => {
  env = await startUnitsEnv('autoupd');
  ({ registryUuid, repoUuid } = await env.registerRepo({ creator: env.owner, name: 'auto_repo', auto: true, onlyTag: true }));
  const created = await env.call('POST', '/units', { token: env.owner.token, body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'auto_unit', is_auto_update_from_repo_unit: true } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  autoUnit = created.body.uuid;
  const manual = await env.call('POST', '/units', {
    token: env.owner.token,
    body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'manual_unit', is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: env.sample.v1 },
  });
  assert.equal(manual.status, 201, JSON.stringify(manual.body));
  manualUnit = manual.body.uuid;
  // The devices run what they were created with.
  await env.backend.deps.pg.query('UPDATE units SET current_commit_version = $1 WHERE uuid = ANY($2::uuid[])', [env.sample.v1, [autoUnit, manualUnit]]);
  updates = await env.subscribe(`${DOMAIN}/input_base_topic/+/update/pepeunit`);
});

after(async () => {
  await updates?.close();
  await env?.close();
});

test('a sync that brings a new tag sends Update to auto-updating units only, once per target', async () => {
  const v3 = await pushCommit('v3', 'v3.0.0');
  await syncRegistry();
  await waitFor(() => updatesFor(autoUnit).length === 1, { what: 'Update to the auto-updating unit' });
  assert.deepEqual(updatesFor(autoUnit)[0], { COMMAND: 'Update', PU_COMMIT_VERSION: v3 });
  const row = await unitRow(autoUnit);
  assert.equal(row.firmware_update_status, 'RequestSent');
  assert.equal(row.firmware_update_target_commit, v3);

  // Nothing new: a second sync neither repeats the Update in flight nor touches the manual unit.
  await syncRegistry();
  // A barrier: the backend publishes in order, so once this control command arrives, any Update
  // the second sync had sent would have arrived before it.
  await env.backend.app.unitsFirmware.sendCommand(manualUnit, 'Update');
  await waitFor(() => updatesFor(manualUnit).length === 1, { what: 'the control Update to the manual unit' });
  assert.equal(updatesFor(autoUnit).length, 1, 'the Update in flight for the same target is not repeated');
  assert.equal(updatesFor(manualUnit)[0]?.PU_COMMIT_VERSION, env.sample.v1, 'the manual unit stays on its pinned commit');

  // The device reports the target: later syncs leave it alone.
  await env.backend.deps.pg.query(`UPDATE units SET current_commit_version = $1, firmware_update_status = 'Success' WHERE uuid = $2`, [v3, autoUnit]);
  await syncRegistry();
  assert.equal(updatesFor(autoUnit).length, 1);
});

test('the periodic safety net re-sends to a unit whose update failed; an untagged commit moves nothing while tag-only', async () => {
  const head = await pushCommit('v4 untagged');
  await syncRegistry();
  assert.equal(updatesFor(autoUnit).length, 1, 'tag-only repo: an untagged commit is not a new target');
  const target = (await unitRow(autoUnit)).current_commit_version as string;
  await env.backend.deps.pg.query(`UPDATE units SET current_commit_version = $1, firmware_update_status = 'Error' WHERE uuid = $2`, [env.sample.v1, autoUnit]);
  const run = await env.backend.unitsAutoUpdate.runAll('test');
  assert.notEqual(run, 'skipped');
  await waitFor(() => updatesFor(autoUnit).length === 2, { what: 'the safety net Update' });
  assert.equal(updatesFor(autoUnit)[1]?.PU_COMMIT_VERSION, target);
  assert.notEqual(target, head);
});

test('a repo change that moves the target (tag-only off) sends Update at once', async () => {
  const head = await git(work(), 'rev-parse', 'HEAD');
  const patched = await env.call('PATCH', `/repos/${repoUuid}`, { token: env.owner.token, body: { is_only_tag_update: false } });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  await env.backend.unitsAutoUpdate.idle();
  await waitFor(() => updatesFor(autoUnit).length === 3, { what: 'Update after the repo change' });
  assert.equal(updatesFor(autoUnit)[2]?.PU_COMMIT_VERSION, head, 'the branch head is the new target');
  assert.equal(updatesFor(manualUnit).length, 1, 'the manual unit got nothing automatically');
});
