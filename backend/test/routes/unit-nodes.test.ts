/**
 * Unit nodes over REST against real Postgres, broker and git: node settings rules,
 * set_state_input through the broker, Output→Input edges with their limits (also under
 * concurrent requests), permissions, schema.json edge topics, and edge deletion.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { unitToken } from '@pepeunit/common';
import { DOMAIN, startUnitsEnv, type UnitsTestEnv } from '../firmware/unit-fixture.ts';

let env: UnitsTestEnv;
let repoUuid: string;
interface TestUnit {
  uuid: string;
  token: string;
  nodes: Record<string, string>;
}
const units: Record<string, TestUnit> = {};

before(async () => {
  env = await startUnitsEnv('unodes');
  repoUuid = (await env.registerRepo({ creator: env.owner, name: 'node_repo' })).repoUuid;
  for (const name of ['unit_a', 'unit_b', 'unit_c', 'unit_d', 'unit_e', 'unit_f', 'unit_g']) {
    const res = await env.call('POST', '/units', {
      token: env.owner.token,
      body: { repo_uuid: repoUuid, visibility_level: 'Public', name, is_auto_update_from_repo_unit: true },
    });
    if (res.status !== 201) throw new Error(JSON.stringify(res.body));
    const nodes = await env.backend.deps.pg.query('SELECT uuid, topic_name FROM units_nodes WHERE unit_uuid = $1', [res.body.uuid]);
    units[name] = {
      uuid: res.body.uuid,
      token: unitToken(res.body.uuid, env.backend.deps.config.secretKey),
      nodes: Object.fromEntries(nodes.rows.map((n) => [n.topic_name, n.uuid])),
    };
  }
});
after(async () => {
  await env?.close();
});

const pg = () => env.backend.deps.pg;
const A = () => units.unit_a!;
const input = (u: TestUnit) => u.nodes['set_fan_state/pepeunit']!;
const input2 = (u: TestUnit) => u.nodes['new_input/pepeunit']!;
const output = (u: TestUnit) => u.nodes['current_temp/pepeunit']!;
const edgeCount = async (column: 'node_input_uuid' | 'node_output_uuid', uuid: string) =>
  (await pg().query(`SELECT count(*)::int AS n FROM units_nodes_edges WHERE ${column} = $1`, [uuid])).rows[0].n as number;

test('get and list: visibility, filters, search', async () => {
  const got = await env.call('GET', `/unit_nodes/${input(A())}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.type, 'Input');
  assert.equal(got.body.topic_name, 'set_fan_state/pepeunit');
  assert.equal(got.body.unit_uuid, A().uuid);
  assert.equal(got.body.max_connections, 10);
  const byUnit = await env.call('GET', `/unit_nodes?unit_uuid=${A().uuid}`, { token: env.owner.token });
  assert.equal(byUnit.body.count, 4);
  const inputs = await env.call('GET', `/unit_nodes?unit_uuid=${A().uuid}&type=Input&order_by_create_date=asc`, { token: A().token });
  assert.deepEqual(inputs.body.unit_nodes.map((n: any) => n.type), ['Input', 'Input']);
  const search = await env.call('GET', `/unit_nodes?unit_uuid=${A().uuid}&search_string=fan state`, { token: env.owner.token });
  assert.deepEqual(search.body.unit_nodes.map((n: any) => n.topic_name), ['set_fan_state/pepeunit']);
  const missing = await env.call('GET', '/unit_nodes/00000000-0000-4000-8000-000000000000', { token: env.owner.token });
  assert.equal(missing.status, 422);
});

test('update: reference rules and messages; the unit visibility bounds the node', async () => {
  const out = output(A());
  const rewritableOutput = await env.call('PATCH', `/unit_nodes/${out}`, { token: env.owner.token, body: { is_rewritable_input: true } });
  assert.equal(rewritableOutput.status, 422);
  assert.equal(rewritableOutput.body.detail, `422: 8: UnitNode Validation Error: This Node ${out} is not Input`);
  const zero = await env.call('PATCH', `/unit_nodes/${input(A())}`, { token: env.owner.token, body: { max_connections: 0 } });
  assert.equal(zero.body.detail, '422: 8: UnitNode Validation Error: max_connections must be at least 1');
  const pipe = await env.call('PATCH', `/unit_nodes/${A().nodes.raw_output}`, { token: env.owner.token, body: { is_data_pipe_active: true } });
  assert.equal(pipe.body.detail, '422: 8: DataPipe Validation Error: DataPipe cannot be activated if the topic does not have the suffix /pepeunit');
  assert.equal((await env.call('PATCH', `/unit_nodes/${out}`, { token: env.other.token, body: { max_connections: 3 } })).status, 403);
  assert.equal((await env.call('PATCH', `/unit_nodes/${out}`, { token: A().token, body: { max_connections: 3 } })).status, 403);

  // The unit becomes Internal: its nodes follow, and a node may not go back to Public.
  assert.equal((await env.call('PATCH', `/units/${A().uuid}`, { token: env.owner.token, body: { visibility_level: 'Internal' } })).status, 200);
  assert.equal((await env.call('GET', `/unit_nodes/${out}`, { token: env.owner.token })).body.visibility_level, 'Internal');
  const lessRestrictive = await env.call('PATCH', `/unit_nodes/${out}`, { token: env.owner.token, body: { visibility_level: 'Public' } });
  assert.equal(lessRestrictive.status, 422);
  assert.equal(lessRestrictive.body.detail, '422: 2: Validation Error: The visibility level of the parent object Unit is lower than that of the child object UnitNode');
  assert.equal((await env.call('GET', `/unit_nodes/${out}`)).status, 403, 'Bot cannot see Internal nodes');

  const events: { nodeUuid: string; action: string }[] = [];
  const stop = env.backend.app.datapipe.onChange((event) => {
    events.push({ nodeUuid: event.nodeUuid, action: event.action });
  });
  const ok = await env.call('PATCH', `/unit_nodes/${input(A())}`, {
    token: env.owner.token,
    body: { visibility_level: 'Private', max_connections: 5, is_data_pipe_active: false },
  });
  await env.call('PATCH', `/unit_nodes/${output(A())}`, { token: env.owner.token, body: { max_connections: 9 } });
  stop();
  assert.deepEqual(events, [{ nodeUuid: input(A()), action: 'Delete' }], 'turning the pipe off notifies the DataPipe consumers; other changes do not');
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.visibility_level, 'Private');
  assert.equal(ok.body.max_connections, 5);
  assert.equal(ok.body.is_data_pipe_active, false);
  assert.equal(ok.body.is_rewritable_input, false, 'untouched fields keep their values');
  // back to Public for the rest of the file
  await env.call('PATCH', `/units/${A().uuid}`, { token: env.owner.token, body: { visibility_level: 'Public' } });
  await env.call('PATCH', `/unit_nodes/${input(A())}`, { token: env.owner.token, body: { visibility_level: 'Public' } });
  await env.call('PATCH', `/unit_nodes/${out}`, { token: env.owner.token, body: { visibility_level: 'Public' } });
});

test('set_state_input: published to the node topic and saved; outputs refused; units need is_rewritable_input', async () => {
  const node = input(A());
  const sub = await env.subscribe(`${DOMAIN}/${node}/pepeunit`);
  const set = await env.call('PATCH', `/unit_nodes/set_state_input/${node}`, { token: env.owner.token, body: { state: '42' } });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  assert.equal(set.body.state, '42');
  await sub.waitFor(1);
  assert.deepEqual(sub.messages, [{ topic: `${DOMAIN}/${node}/pepeunit`, payload: '42' }]);
  assert.equal((await pg().query('SELECT state FROM units_nodes WHERE uuid = $1', [node])).rows[0].state, '42');

  const onOutput = await env.call('PATCH', `/unit_nodes/set_state_input/${output(A())}`, { token: env.owner.token, body: { state: '1' } });
  assert.equal(onOutput.status, 422);
  assert.match(onOutput.body.detail, /is not Input$/);
  const byUnit = await env.call('PATCH', `/unit_nodes/set_state_input/${node}`, { token: units.unit_b!.token, body: { state: '7' } });
  assert.equal(byUnit.status, 403, 'not rewritable by units');
  await env.call('PATCH', `/unit_nodes/${node}`, { token: env.owner.token, body: { is_rewritable_input: true } });
  const allowed = await env.call('PATCH', `/unit_nodes/set_state_input/${node}`, { token: units.unit_b!.token, body: { state: '7' } });
  assert.equal(allowed.status, 200);
  await sub.waitFor(2);
  assert.equal(sub.messages[1]!.payload, '7');
  await sub.close();
});

test('edges: limit of incoming connections; the max_connections+1-th edge is refused and nothing is written', async () => {
  const target = input(A());
  await env.call('PATCH', `/unit_nodes/${target}`, { token: env.owner.token, body: { max_connections: 2 } });
  const schemaSub = await env.subscribe(`${DOMAIN}/input_base_topic/${A().uuid}/schema_update/pepeunit`);
  for (const name of ['unit_b', 'unit_c']) {
    const res = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
      token: env.owner.token,
      body: { node_output_uuid: output(units[name]!), node_input_uuid: target },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.node_input_uuid, target);
  }
  await schemaSub.waitFor(2);
  assert.equal(schemaSub.messages.length, 2, 'SchemaUpdate sent to the input unit after each edge');
  assert.equal(schemaSub.messages[0]!.payload, '{"COMMAND": "SchemaUpdate"}');
  await schemaSub.close();

  const third = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
    token: env.owner.token,
    body: { node_output_uuid: output(units.unit_d!), node_input_uuid: target },
  });
  assert.equal(third.status, 422);
  assert.equal(third.body.detail, `422: 8: UnitNode Validation Error: Maximum number of incoming connections (2) reached for input node ${target}`);
  assert.equal(await edgeCount('node_input_uuid', target), 2);
  const dToA = await pg().query('SELECT 1 FROM permissions WHERE agent_unit_uuid = $1 AND resource_unit_node_uuid = $2', [units.unit_d!.uuid, target]);
  assert.equal(dToA.rowCount, 0, 'no permission written for the refused edge');

  const duplicate = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
    token: env.owner.token,
    body: { node_output_uuid: output(units.unit_b!), node_input_uuid: target },
  });
  assert.equal(duplicate.body.detail, '422: 8: UnitNode Validation Error: Edge exist');
  const swapped = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
    token: env.owner.token,
    body: { node_output_uuid: target, node_input_uuid: output(units.unit_b!) },
  });
  assert.equal(swapped.body.detail, `422: 8: UnitNode Validation Error: This Node ${target} is not Output`);
  const unitCaller = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
    token: units.unit_b!.token,
    body: { node_output_uuid: output(units.unit_b!), node_input_uuid: input2(A()) },
  });
  assert.equal(unitCaller.status, 403, 'only users create edges');
});

test('edges: automatic permissions, schema.json lists linked output topics, lists by output/input', async () => {
  const target = input(A());
  const b = units.unit_b!;
  const perms = await pg().query(
    `SELECT agent_unit_uuid, resource_type, coalesce(resource_unit_node_uuid, resource_unit_uuid) AS resource FROM permissions
      WHERE (agent_unit_uuid = $1 AND (resource_unit_node_uuid = $2 OR resource_unit_uuid = $3)) OR (agent_unit_uuid = $3 AND resource_unit_node_uuid = $4)`,
    [b.uuid, target, A().uuid, output(b)],
  );
  const seen = perms.rows.map((r) => `${r.agent_unit_uuid === b.uuid ? 'B' : 'A'}->${r.resource_type}:${r.resource === target ? 'input' : r.resource === A().uuid ? 'unitA' : 'outputB'}`).sort();
  assert.deepEqual(seen, ['A->UnitNode:outputB', 'B->Unit:unitA', 'B->UnitNode:input']);

  const schema = await env.call('GET', `/units/get_current_schema/${A().uuid}`, { token: A().token });
  assert.deepEqual(schema.body.input_topic['set_fan_state/pepeunit'].sort(), [
    `${DOMAIN}/${target}/pepeunit`,
    `${DOMAIN}/${output(b)}/pepeunit`,
    `${DOMAIN}/${output(units.unit_c!)}/pepeunit`,
  ].sort());

  const inputsOfB = await env.call('GET', `/unit_nodes?output_uuid=${output(b)}&order_by_create_date=desc&limit=10&offset=0`, { token: b.token });
  assert.deepEqual(inputsOfB.body.unit_nodes.map((n: any) => n.uuid), [target]);
  const outputUnits = await env.call('GET', `/units?is_include_output_unit_nodes=true&unit_node_input_uuid=${target}&order_by_unit_name=asc`, { token: A().token });
  assert.deepEqual(
    outputUnits.body.units.map((u: any) => [u.uuid, u.unit_nodes.map((n: any) => n.uuid)]).sort(),
    [
      [b.uuid, [output(b)]],
      [units.unit_c!.uuid, [output(units.unit_c!)]],
    ].sort(),
  );
  // the broker decision follows: unit B may now subscribe to A's input topic? no — only to
  // outputs; but A may subscribe to B's Output topic (Public) and publish to its own outputs.
  const access = env.backend.app.acl.access;
  assert.equal(await access.authorize(A().token, `${DOMAIN}/${output(b)}/pepeunit`, 'subscribe'), 'allow');
});

test('edges: five concurrent creations against a limit of 3 give exactly 3 edges', async () => {
  const target = input2(A());
  await env.call('PATCH', `/unit_nodes/${target}`, { token: env.owner.token, body: { max_connections: 3 } });
  const sources = ['unit_c', 'unit_d', 'unit_e', 'unit_f', 'unit_g'].map((name) => output(units[name]!));
  const results = await Promise.all(
    sources.map((source) =>
      env.call('POST', '/unit_nodes/create_unit_node_edge', { token: env.owner.token, body: { node_output_uuid: source, node_input_uuid: target } }),
    ),
  );
  const created = results.filter((r) => r.status === 201);
  const refused = results.filter((r) => r.status === 422);
  assert.equal(created.length, 3, JSON.stringify(results.map((r) => [r.status, r.body?.detail])));
  assert.equal(refused.length, 2);
  for (const r of refused) assert.match(r.body.detail, /Maximum number of incoming connections \(3\) reached/);
  assert.equal(await edgeCount('node_input_uuid', target), 3);
});

test('edges: limit of outgoing connections', async () => {
  const b = units.unit_b!;
  await env.call('PATCH', `/unit_nodes/${output(b)}`, { token: env.owner.token, body: { max_connections: 1 } });
  const res = await env.call('POST', '/unit_nodes/create_unit_node_edge', {
    token: env.owner.token,
    body: { node_output_uuid: output(b), node_input_uuid: input(units.unit_g!) },
  });
  assert.equal(res.status, 422);
  assert.equal(res.body.detail, `422: 8: UnitNode Validation Error: Maximum number of outgoing connections (1) reached for output node ${output(b)}`);
  assert.equal(await edgeCount('node_output_uuid', output(b)), 1);
});

test('edges of a unit, and deletion: rights, permission removal, unknown pairs', async () => {
  const edges = await env.call('GET', `/unit_nodes/get_unit_node_edges/${A().uuid}`, { token: env.owner.token });
  assert.equal(edges.status, 200);
  assert.equal(edges.body.count, 5, '2 into set_fan_state + 3 into new_input');
  const target = input(A());
  const b = units.unit_b!;
  const query = `input_uuid=${target}&output_uuid=${output(b)}`;
  assert.equal((await env.call('DELETE', `/unit_nodes/delete_unit_node_edge?${query}`, { token: env.other.token })).status, 403);
  const removed = await env.call('DELETE', `/unit_nodes/delete_unit_node_edge?${query}`, { token: env.owner.token });
  assert.equal(removed.status, 204);
  assert.equal(await edgeCount('node_input_uuid', target), 1);
  const perm = await pg().query('SELECT 1 FROM permissions WHERE agent_unit_uuid = $1 AND resource_unit_node_uuid = $2', [b.uuid, target]);
  assert.equal(perm.rowCount, 0, "the output unit's access to the input node is removed");
  const again = await env.call('DELETE', `/unit_nodes/delete_unit_node_edge?${query}`, { token: env.owner.token });
  assert.equal(again.status, 422);
  assert.match(again.body.detail, /^422: 2: Validation Error: Edge from .* does not exist$/);
  const schema = await env.call('GET', `/units/get_current_schema/${A().uuid}`, { token: A().token });
  assert.equal(schema.body.input_topic['set_fan_state/pepeunit'].length, 2, 'own topic + the remaining edge');
  const afterDelete = await env.call('GET', `/unit_nodes/get_unit_node_edges/${A().uuid}`, { token: env.owner.token });
  assert.equal(afterDelete.body.count, 4);
});
