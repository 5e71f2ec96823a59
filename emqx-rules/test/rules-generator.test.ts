// The rule catalogue and generator: deterministic ids, SQL that follows EMQX 5.8's lexical rules
// (single-quoted strings, double-quoted topics), strict validation of interpolated data, and rule
// bodies the embedded broker (and EMQX) accept.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ingestTopicTemplate } from '@pepeunit/common/topics';
import { compileRuleSql, tokenize } from '../src/embedded/rule-engine/index.js';
import {
  PIPE_RULE_PREFIX,
  RULE_FAMILIES,
  RuleGenerationError,
  checkDomain,
  isValidRuleId,
  nodeUuidOfPipeRule,
  pipeRule,
  pipeRuleId,
  pipeRules,
  quoteTopicFilter,
  ruleBody,
  ruleDifferences,
  ruleFamilyOf,
  sqlString,
} from '../src/rules/index.js';
import { startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const NODE = '5f0e8b1c-2d3a-4b5c-8d7e-9f0a1b2c3d4e';

describe('rule catalogue', () => {
  it('keeps family prefixes disjoint (no prefix starts another) and valid in rule ids', () => {
    const prefixes = Object.values(RULE_FAMILIES).map((family) => family.prefix);
    assert.deepEqual(prefixes.sort(), ['alert-', 'cnt-', 'pipe-']);
    for (const a of prefixes) {
      assert.ok(isValidRuleId(`${a}x`));
      for (const b of prefixes) if (a !== b) assert.ok(!a.startsWith(b), `${a} overlaps ${b}`);
    }
    assert.equal(RULE_FAMILIES.pipe.kind, 'policy');
    assert.equal(RULE_FAMILIES.count.kind, 'stable');
    assert.equal(RULE_FAMILIES.alert.kind, 'stable');
    assert.equal(ruleFamilyOf('cnt-unit-x')?.name, 'count');
    assert.equal(ruleFamilyOf('my-hand-made-rule'), undefined);
  });

  it('derives deterministic pipe rule ids from node uuids, and back', () => {
    assert.equal(pipeRuleId(NODE), `pipe-${NODE}`);
    assert.equal(pipeRuleId(NODE.toUpperCase()), `pipe-${NODE}`);
    assert.ok(isValidRuleId(pipeRuleId(NODE)));
    assert.equal(nodeUuidOfPipeRule(`pipe-${NODE}`), NODE);
    assert.equal(nodeUuidOfPipeRule('pipe-not-a-uuid'), null);
    assert.equal(nodeUuidOfPipeRule(`count-${NODE}`), null);
    assert.throws(() => pipeRuleId('x" OR 1'), RuleGenerationError);
    assert.throws(() => pipeRuleId(`${NODE}/#`), RuleGenerationError);
  });
});

describe('rule generator', () => {
  it('emits the pipe rule with quoted topic, aliased ts and the ingest republish action', () => {
    const rule = pipeRule({ domain: 'pepeunit.example.com', nodeUuid: NODE });
    assert.equal(rule.id, `pipe-${NODE}`);
    assert.equal(rule.sql, `SELECT payload, topic, clientid, publish_received_at AS ts FROM "pepeunit.example.com/${NODE}/pepeunit"`);
    assert.equal(rule.enable, true);
    assert.match(rule.description, new RegExp(NODE));
    assert.deepEqual(rule.actions, [
      {
        function: 'republish',
        args: { topic: ingestTopicTemplate(), qos: 0, retain: false, payload: '', mqtt_properties: {}, user_properties: '', direct_dispatch: false },
      },
    ]);
    assert.equal(ingestTopicTemplate(), 'pepeunit_ingest/${topic}');
    // Lexically: the topic is one NAME token (double quotes), no STRING token appears.
    const tokens = tokenize(rule.sql);
    assert.deepEqual(tokens.filter((token) => token.type === 'NAME' && token.quoted).map((token) => token.value), [`pepeunit.example.com/${NODE}/pepeunit`]);
    assert.equal(tokens.filter((token) => token.type === 'STRING').length, 0);
    const compiled = compileRuleSql(rule.sql);
    assert.ok(!('error' in compiled));
    assert.deepEqual('from' in compiled ? compiled.from : [], [`pepeunit.example.com/${NODE}/pepeunit`]);
  });

  it('accepts domains with ports and IP addresses', () => {
    assert.equal(checkDomain('localhost:8555'), 'localhost:8555');
    assert.equal(checkDomain('192.168.1.10'), '192.168.1.10');
    assert.match(pipeRule({ domain: 'localhost:8555', nodeUuid: NODE }).sql, /FROM "localhost:8555\//);
  });

  it('refuses domains that are not a single safe topic level', () => {
    for (const domain of ['', 'a/b', 'a+', '#', 'x"y', "x'y", 'x\\y', 'a\u0000b', 'a b', 'a\nb', '$SYS']) {
      assert.throws(() => pipeRule({ domain, nodeUuid: NODE }), RuleGenerationError, `domain ${JSON.stringify(domain)}`);
    }
  });

  it('quotes topic filters only when they are valid and safe; single-quotes plain strings', () => {
    assert.equal(quoteTopicFilter('a/+/c/#'), '"a/+/c/#"');
    for (const filter of ['', 'a/#/b', 'a/b#', 'a+/b', 'x"y', "x'y", 'a\u0000', '$events/client_connected']) {
      assert.throws(() => quoteTopicFilter(filter), RuleGenerationError, `filter ${JSON.stringify(filter)}`);
    }
    assert.equal(sqlString('info'), "'info'");
    assert.throws(() => sqlString("it's"), RuleGenerationError);
  });

  it('builds sorted, de-duplicated rule lists', () => {
    const other = '00000000-0000-4000-8000-000000000001';
    const rules = pipeRules('d', [NODE, other, NODE.toUpperCase()]);
    assert.deepEqual(rules.map((rule) => rule.id), [`pipe-${other}`, `pipe-${NODE}`]);
    assert.ok(rules.every((rule) => rule.id.startsWith(PIPE_RULE_PREFIX)));
  });

  it('compares semantically: whitespace and keyword case in SQL, EMQX defaults in republish args', () => {
    const rule = pipeRule({ domain: 'd', nodeUuid: NODE });
    const fromEmqx = {
      sql: `select payload,topic,  clientid, publish_received_at as ts\nFROM "d/${NODE}/pepeunit"`,
      actions: [{ function: 'republish', args: { topic: 'pepeunit_ingest/${topic}', qos: 0, retain: false, payload: '', mqtt_properties: {}, user_properties: '', direct_dispatch: false } }],
      enable: true,
      description: rule.description,
    };
    assert.deepEqual(ruleDifferences(rule, fromEmqx), []);
    assert.deepEqual(ruleDifferences(rule, { ...fromEmqx, sql: fromEmqx.sql.replace('pepeunit"', 'pepeunit/x"') }), ['sql']);
    assert.deepEqual(ruleDifferences(rule, { ...fromEmqx, enable: false }), ['enable']);
    assert.deepEqual(ruleDifferences(rule, { ...fromEmqx, actions: [{ function: 'republish', args: { topic: 'pepeunit_ingest/${topic}' } }] }), ['actions'], 'a missing arg means EMQX default, which differs from ours');
    assert.deepEqual(ruleDifferences({ ...rule, actions: [{ function: 'republish', args: { topic: 't' } }] }, { ...fromEmqx, actions: [{ function: 'republish', args: { topic: 't', qos: '${qos}', retain: '${retain}', payload: '${payload}', mqtt_properties: {}, user_properties: '${user_properties}', direct_dispatch: false } }] }), []);
    assert.deepEqual(ruleDifferences({ ...rule, actions: ['webhook:alerts'] }, { ...fromEmqx, actions: ['http:alerts'] }), []);
  });
});

describe('generated rules against the embedded broker', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
  });

  it('are accepted by POST and PUT /rules and read back equal', async () => {
    const rule = pipeRule({ domain: 'pepeunit.example.com', nodeUuid: NODE });
    const created = await broker.client.createRule({ id: rule.id, ...ruleBody(rule) });
    assert.deepEqual(ruleDifferences(rule, created), []);
    assert.deepEqual(created.from, [`pepeunit.example.com/${NODE}/pepeunit`]);
    const updated = await broker.client.upsertRule(rule.id, ruleBody({ ...rule, enable: false }));
    assert.deepEqual(ruleDifferences(rule, updated), ['enable']);
    const listed = await broker.client.listAllRules({ like_id: PIPE_RULE_PREFIX });
    assert.deepEqual(listed.map((item) => item.id), [rule.id]);
  });
});
