// The stable rule families (`cnt-`, `alert-`): ids, generated SQL against the shapes verified
// with EMQX's rulesql grammar (wave2-integrations.md §4.1, §4.6, golden strings below), the
// lexical rules of emqx-5.md §3.2, the embedded parser, and the pure plan of the stable
// reconciler.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRuleSql } from '../src/embedded/rule-engine/index.js';
import {
  ALERT_ACTION_REF,
  ALERT_AUTHZ_DENY_RULE_ID,
  ALERT_DISCONNECT_RULE_ID,
  RULE_FAMILIES,
  RuleGenerationError,
  alertLogRule,
  alertLogRuleId,
  alertLogSql,
  alertRules,
  authzDenyAlertSql,
  countNodeRuleId,
  countUnitRuleId,
  countingRules,
  disconnectAlertSql,
  isValidRuleId,
  levelSpellings,
  levelsAtOrAbove,
  nodeCountingSql,
  normaliseSql,
  pipeRuleSql,
  planStableRules,
  ruleFamilyOf,
  stableRuleOwner,
  unitCountingSql,
} from '../src/rules/index.js';
import type { RuleSpec } from '../src/rules/index.js';
import { lexicalProblems } from './sql-lint.js';

const DOMAIN = 'pu.example.com';
const UNIT = '0f1e6c1a-5a8e-4a43-9a4c-6f1b8d2a3c4d';
const NODE = '3c0a9a52-1f7b-4e0e-9f3e-2b1a6a9f0c11';

// Verbatim from wave2-integrations.md §4.1 / §4.6 (parsed by EMQX's rulesql grammar there).
const GOLDEN_UNIT_COUNT = `SELECT clientid
FROM "pu.example.com/+/0f1e6c1a-5a8e-4a43-9a4c-6f1b8d2a3c4d/+/pepeunit"`;
const GOLDEN_NODE_COUNT = `SELECT clientid
FROM "pu.example.com/3c0a9a52-1f7b-4e0e-9f3e-2b1a6a9f0c11",
     "pu.example.com/3c0a9a52-1f7b-4e0e-9f3e-2b1a6a9f0c11/pepeunit"`;
const GOLDEN_LOG = `FOREACH
  CASE WHEN is_array(json_decode(payload)) THEN json_decode(payload)
       ELSE [json_decode(payload)] END AS item
DO
  'unit_log' AS kind, item.level AS level, item.text AS text,
  nth(3, split(topic, '/', 'notrim')) AS unit_uuid, clientid, timestamp
INCASE
  item.level IN ('Warning', 'Error', 'Critical', 'warning', 'error', 'critical', 'WARNING', 'ERROR', 'CRITICAL')
FROM "pu.example.com/output_base_topic/+/log/pepeunit"`;
const GOLDEN_AUTHZ = `SELECT 'authz_deny' AS kind, clientid, username, peerhost, topic, action, authz_source, timestamp
FROM "$events/client_check_authz_complete"
WHERE result = 'deny' AND authz_source != 'cache'`;
const GOLDEN_DISCONNECT = `SELECT 'disconnect' AS kind, clientid, username, reason, disconnected_at
FROM "$events/client_disconnected"
WHERE reason IN ('keepalive_timeout', 'not_authorized', 'kicked', 'discarded')`;

function assertSameSql(actual: string, expected: string, what: string): void {
  assert.equal(normaliseSql(actual), normaliseSql(expected), what);
}

describe('stable rule catalogue', () => {
  it('names the families cnt- and alert- with disjoint prefixes, and derives ids from uuids', () => {
    assert.equal(RULE_FAMILIES.count.prefix, 'cnt-');
    assert.equal(RULE_FAMILIES.alert.prefix, 'alert-');
    assert.equal(RULE_FAMILIES.count.reserved, false);
    assert.equal(countUnitRuleId(UNIT.toUpperCase()), `cnt-unit-${UNIT}`);
    assert.equal(countNodeRuleId(NODE), `cnt-node-${NODE}`);
    assert.equal(alertLogRuleId('Warning', UNIT), `alert-log-warning-${UNIT}`);
    for (const id of [countUnitRuleId(UNIT), countNodeRuleId(NODE), alertLogRuleId('Critical', UNIT), ALERT_AUTHZ_DENY_RULE_ID, ALERT_DISCONNECT_RULE_ID]) {
      assert.ok(isValidRuleId(id), id);
    }
    assert.equal(ruleFamilyOf(`cnt-node-${NODE}`)?.name, 'count');
    assert.equal(ruleFamilyOf('alert-disconnect')?.name, 'alert');
    assert.equal(ruleFamilyOf(`count-${UNIT}`), undefined, 'the old reserved prefix is not a family any more');
    assert.throws(() => countUnitRuleId('x"'), RuleGenerationError);
    assert.throws(() => alertLogRuleId('Loud' as never, UNIT), RuleGenerationError);
  });

  it('reads the owner back from a stable rule id', () => {
    assert.deepEqual(stableRuleOwner(`cnt-unit-${UNIT}`), { kind: 'count-unit', unitUuid: UNIT });
    assert.deepEqual(stableRuleOwner(`cnt-node-${NODE}`), { kind: 'count-node', nodeUuid: NODE });
    assert.deepEqual(stableRuleOwner(`alert-log-error-${UNIT}`), { kind: 'alert-log', unitUuid: UNIT, level: 'Error' });
    assert.deepEqual(stableRuleOwner('alert-authz-deny'), { kind: 'alert-instance', id: 'alert-authz-deny' });
    assert.equal(stableRuleOwner(`alert-log-loud-${UNIT}`), null);
    assert.equal(stableRuleOwner(`pipe-${NODE}`), null);
  });

  it('renders the accepted level set from the threshold in the spellings devices use', () => {
    assert.deepEqual(levelsAtOrAbove('Warning'), ['Warning', 'Error', 'Critical']);
    assert.deepEqual(levelsAtOrAbove('Critical'), ['Critical']);
    assert.equal(levelsAtOrAbove('Debug').length, 5);
    assert.deepEqual(levelSpellings(['Error', 'Critical']), ['Error', 'Critical', 'error', 'critical', 'ERROR', 'CRITICAL']);
  });
});

describe('generated SQL is valid EMQX 5.8 rule SQL', () => {
  const generated: Array<[string, string]> = [
    ['cnt-unit', unitCountingSql(DOMAIN, UNIT)],
    ['cnt-node', nodeCountingSql(DOMAIN, NODE)],
    ['alert-log (Debug)', alertLogSql(DOMAIN, UNIT, 'Debug')],
    ['alert-log (Warning)', alertLogSql(DOMAIN, UNIT, 'Warning')],
    ['alert-log (Critical)', alertLogSql(DOMAIN, UNIT, 'Critical')],
    ['alert-authz-deny', authzDenyAlertSql()],
    ['alert-disconnect', disconnectAlertSql()],
    ['pipe', pipeRuleSql(DOMAIN, NODE)],
  ];

  it('(b) equals the statements verified with the rulesql grammar, for the example domain and uuids', () => {
    assertSameSql(unitCountingSql(DOMAIN, UNIT), GOLDEN_UNIT_COUNT, 'cnt-unit');
    assertSameSql(nodeCountingSql(DOMAIN, NODE), GOLDEN_NODE_COUNT, 'cnt-node');
    // The per-unit log rule reads one unit's log topic where §4.6 reads every unit's (`+`).
    assertSameSql(alertLogSql(DOMAIN, UNIT, 'Warning'), GOLDEN_LOG.replace('output_base_topic/+/log', `output_base_topic/${UNIT}/log`), 'alert-log');
    assertSameSql(authzDenyAlertSql(), GOLDEN_AUTHZ, 'alert-authz-deny');
    assertSameSql(disconnectAlertSql(), GOLDEN_DISCONNECT, 'alert-disconnect');
    // The golden statements themselves pass the same checks as the generated ones.
    for (const sql of [GOLDEN_UNIT_COUNT, GOLDEN_NODE_COUNT, GOLDEN_LOG, GOLDEN_AUTHZ, GOLDEN_DISCONNECT]) {
      assert.ok(!('error' in compileRuleSql(sql)), sql);
      assert.deepEqual(lexicalProblems(sql), [], sql);
    }
  });

  it('(a) parses with the embedded parser, which refuses what it cannot run', () => {
    for (const [name, sql] of generated) {
      const compiled = compileRuleSql(sql);
      assert.ok(!('error' in compiled), `${name}: ${'error' in compiled ? compiled.error : ''}`);
    }
    const from = (sql: string) => {
      const compiled = compileRuleSql(sql);
      return 'from' in compiled ? compiled.from : [];
    };
    assert.deepEqual(from(nodeCountingSql(DOMAIN, NODE)), [`${DOMAIN}/${NODE}`, `${DOMAIN}/${NODE}/pepeunit`]);
    assert.deepEqual(from(alertLogSql(DOMAIN, UNIT, 'Error')), [`${DOMAIN}/output_base_topic/${UNIT}/log/pepeunit`]);
  });

  it('(c) follows the lexical rules of emqx-5.md §3.2 (quoting, aliases, no topic(n), known functions)', () => {
    for (const [name, sql] of generated) assert.deepEqual(lexicalProblems(sql), [], name);
    // The checker itself catches each broken rule.
    assert.ok(lexicalProblems(`SELECT clientid FROM "t" WHERE payload.x = "a"`).some((problem) => problem.includes('outside FROM')));
    assert.ok(lexicalProblems(`SELECT topic(2) AS u FROM "t"`).some((problem) => problem.includes('topic(n)')));
    assert.ok(lexicalProblems(`SELECT lower(clientid) FROM "t"`).some((problem) => problem.includes('not aliased')));
    assert.ok(lexicalProblems(`SELECT clientid FROM 't/#'`).some((problem) => problem.includes('not double-quoted')));
    assert.ok(lexicalProblems(`SELECT clientid FROM "t" WHERE a = TRUE`).some((problem) => problem.includes('lower case')));
  });

  it('refuses domains and uuids that cannot be written safely', () => {
    assert.throws(() => unitCountingSql('a/b', UNIT), RuleGenerationError);
    assert.throws(() => nodeCountingSql(DOMAIN, `${NODE}/#`), RuleGenerationError);
    assert.throws(() => alertLogSql("x'y", UNIT, 'Error'), RuleGenerationError);
  });
});

describe('stable rule sets', () => {
  it('builds the counting rules of units and their nodes: no actions, sorted, de-duplicated', () => {
    const other = '11111111-2222-4333-8444-555555555555';
    const rules = countingRules(DOMAIN, [
      { unitUuid: UNIT, nodeUuids: [NODE] },
      { unitUuid: other, nodeUuids: [] },
      { unitUuid: UNIT, nodeUuids: [NODE] },
    ]);
    assert.deepEqual(rules.map((rule) => rule.id), [`cnt-node-${NODE}`, `cnt-unit-${UNIT}`, `cnt-unit-${other}`]);
    assert.ok(rules.every((rule) => rule.actions.length === 0 && rule.enable));
  });

  it('builds the alert rules: one log rule per unit with a level, plus the two instance rules', () => {
    const other = '11111111-2222-4333-8444-555555555555';
    const rules = alertRules({ domain: DOMAIN, units: [{ unitUuid: UNIT, level: 'Error' }, { unitUuid: other, level: null }] });
    assert.deepEqual(rules.map((rule) => rule.id), ['alert-authz-deny', 'alert-disconnect', `alert-log-error-${UNIT}`]);
    assert.ok(rules.every((rule) => rule.actions.length === 1 && rule.actions[0] === ALERT_ACTION_REF));
    assert.deepEqual(alertRules({ domain: DOMAIN, units: [], authzDeny: false, disconnect: false }), []);
    assert.deepEqual(alertLogRule(DOMAIN, UNIT, 'Info', { action: 'http:other' }).actions, ['http:other']);
    assert.throws(() => alertLogRule(DOMAIN, UNIT, 'Info', { action: 'not an action' }), RuleGenerationError);
  });

  it('plans creates, deletes and recreates, never an edit (table)', () => {
    const wanted: RuleSpec[] = countingRules(DOMAIN, [{ unitUuid: UNIT, nodeUuids: [NODE] }]);
    const unitRule = wanted.find((rule) => rule.id.startsWith('cnt-unit-')) as RuleSpec;
    const nodeRule = wanted.find((rule) => rule.id.startsWith('cnt-node-')) as RuleSpec;
    const asEmqx = (rule: RuleSpec, changes: Partial<RuleSpec> = {}) => ({ id: rule.id, sql: rule.sql, actions: rule.actions, enable: rule.enable, description: rule.description, ...changes });
    const cases: Array<{ name: string; existing: ReturnType<typeof asEmqx>[]; create: string[]; delete: string[]; recreate: string[]; present: string[] }> = [
      { name: 'nothing yet', existing: [], create: [nodeRule.id, unitRule.id], delete: [], recreate: [], present: [] },
      { name: 'all present', existing: [asEmqx(unitRule), asEmqx(nodeRule)], create: [], delete: [], recreate: [], present: [unitRule.id, nodeRule.id] },
      { name: 'a stray rule', existing: [asEmqx(unitRule), asEmqx(nodeRule), { ...asEmqx(unitRule), id: 'cnt-unit-gone' }], create: [], delete: ['cnt-unit-gone'], recreate: [], present: [unitRule.id, nodeRule.id] },
      { name: 'SQL edited by hand', existing: [asEmqx(unitRule, { sql: 'SELECT * FROM "x"' }), asEmqx(nodeRule)], create: [], delete: [], recreate: [unitRule.id], present: [nodeRule.id] },
      { name: 'disabled by hand', existing: [asEmqx(unitRule, { enable: false }), asEmqx(nodeRule)], create: [], delete: [], recreate: [unitRule.id], present: [nodeRule.id] },
      { name: 'only the description differs', existing: [asEmqx(unitRule, { description: 'edited' }), asEmqx(nodeRule)], create: [], delete: [], recreate: [], present: [unitRule.id, nodeRule.id] },
      { name: 'whitespace-only SQL difference', existing: [asEmqx(unitRule, { sql: unitRule.sql.replace(' FROM ', '\n  from ') }), asEmqx(nodeRule)], create: [], delete: [], recreate: [], present: [unitRule.id, nodeRule.id] },
    ];
    for (const testCase of cases) {
      const plan = planStableRules(testCase.existing, wanted);
      assert.deepEqual(plan.create.map((rule) => rule.id), testCase.create, testCase.name);
      assert.deepEqual(plan.delete, testCase.delete, testCase.name);
      assert.deepEqual(plan.recreate.map((rule) => rule.id), testCase.recreate, testCase.name);
      assert.deepEqual(plan.present, testCase.present, testCase.name);
    }
  });
});
