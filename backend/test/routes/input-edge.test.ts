/**
 * Bad input at the edge (issue 10.8): NUL characters anywhere in a request and numbers beyond
 * what the databases take are a 422 before anything runs; nothing is published or changed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DOMAIN, startUnitsEnv, type UnitsTestEnv } from '../firmware/unit-fixture.ts';
import { waitFor } from '@pepeunit/tests/wait';

let env: UnitsTestEnv;
let inputNode = '';

before(async () => {
  env = await startUnitsEnv('input_edge');
  const { repoUuid } = await env.registerRepo({ creator: env.owner, name: 'edge_repo' });
  const unit = await env.call('POST', '/units', { token: env.owner.token, body: { repo_uuid: repoUuid, visibility_level: 'Public', name: 'edge_unit', is_auto_update_from_repo_unit: true } });
  assert.equal(unit.status, 201, JSON.stringify(unit.body));
  const nodes = await env.call('GET', `/unit_nodes?unit_uuid=${unit.body.uuid}&type=Input`, { token: env.owner.token });
  inputNode = nodes.body.unit_nodes[0].uuid;
});
after(async () => env?.close());

const LISTS = ['/users', '/repos', '/units', '/unit_nodes', '/repository_registry', '/repository_registry/search'];

test('NUL characters in query strings are 422 on every list endpoint, not 500', async () => {
  for (const path of LISTS) {
    const res = await env.call('GET', `${path}?search_string=a%00b`, { token: env.owner.token });
    assert.equal(res.status, 422, `${path}: ${JSON.stringify(res.body)}`);
    assert.match(JSON.stringify(res.body), /NUL character/);
  }
  const body = await env.call('POST', '/users', { body: { login: 'nul\u0000user', password: 'Passw0rd!x' } });
  assert.equal(body.status, 422);
});

test('offsets and limits beyond int32 are 422 on every list endpoint and on log_list', async () => {
  for (const path of LISTS) {
    for (const query of ['offset=99999999999999999999', 'limit=9223372036854775808', 'offset=2147483648']) {
      const res = await env.call('GET', `${path}?${query}`, { token: env.owner.token });
      assert.equal(res.status, 422, `${path}?${query}: ${JSON.stringify(res.body)}`);
    }
  }
  const logs = await env.call('GET', `/units/log_list/?uuid=${inputNode}&offset=99999999999999999999`, { token: env.owner.token });
  assert.equal(logs.status, 422);
});

test('set_state_input with a NUL character publishes nothing and changes nothing', async () => {
  const before = (await env.backend.deps.pg.query('SELECT state FROM units_nodes WHERE uuid = $1', [inputNode])).rows[0].state;
  const watcher = await env.subscribe(`${DOMAIN}/${inputNode}/#`);
  const watcherPlain = await env.subscribe(`${DOMAIN}/${inputNode}`);
  const bad = await env.call('PATCH', `/unit_nodes/set_state_input/${inputNode}`, { token: env.owner.token, body: { state: 'on\u0000off' } });
  assert.equal(bad.status, 422, JSON.stringify(bad.body));
  // A good command afterwards is the barrier: had the bad one been published, it would arrive first.
  const good = await env.call('PATCH', `/unit_nodes/set_state_input/${inputNode}`, { token: env.owner.token, body: { state: 'on' } });
  assert.equal(good.status, 200, JSON.stringify(good.body));
  await waitFor(() => watcher.messages.length + watcherPlain.messages.length >= 1, { what: 'the good value' });
  const seen = [...watcher.messages, ...watcherPlain.messages].map((m) => m.payload);
  assert.deepEqual(seen, ['on'], 'only the good value was published');
  assert.notEqual(before, 'on\u0000off');
  await watcher.close();
  await watcherPlain.close();
});
