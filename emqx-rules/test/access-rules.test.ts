// Table tests for the pure parts of the embedded broker's access control: topic matching, the
// acl.conf subset, the authn-response ACL, template rendering and EMQX value formats.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AclSyntaxError, evaluateAclRules, parseAclRules } from '../src/embedded/access/acl-file.js';
import type { AccessRequest, AccessSubject } from '../src/embedded/access/acl-file.js';
import { checkResponseAcl, parseResponseAcl } from '../src/embedded/access/response-acl.js';
import { AUTHN_ALLOWED_VARS, disallowedPlaceholders, renderTemplate } from '../src/embedded/access/templates.js';
import { topicMatches } from '../src/embedded/access/topic-match.js';
import { parseByteSize, parseDuration, parseRate } from '../src/emqx-values.js';
import { DEFAULT_ACL_RULES } from '../src/embedded/resources.js';

const subject = (overrides: Partial<AccessSubject> = {}): AccessSubject => ({
  clientid: 'c1',
  username: 'u1',
  peerhost: '10.1.2.3',
  clientAttrs: {},
  ...overrides,
});
const publish = (topic: string, qos = 0, retain = false): AccessRequest => ({ action: 'publish', topic, qos, retain });
const subscribe = (topic: string, qos = 0): AccessRequest => ({ action: 'subscribe', topic, qos, retain: false });

describe('topicMatches (emqx_topic:match semantics)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b/c', 'a/b/c', true],
    ['a/b/c', 'a/+/c', true],
    ['a/b/c', 'a/#', true],
    ['a', 'a/#', true],
    ['a/b', 'a/+', true],
    ['a/b/c', 'a/+', false],
    ['a/+', 'a/+', true],
    ['a/+', 'a/#', true],
    ['a/+', 'a/b', false],
    ['a/#', 'a/+/#', true],
    ['#', 'a/#', false],
    ['$SYS/x', '#', false],
    ['$SYS/x', '+/x', false],
    ['$SYS/x', '$SYS/#', true],
    ['a//b', 'a/+/b', true],
  ];
  for (const [name, filter, expected] of cases) {
    it(`${name} vs ${filter} → ${expected}`, () => assert.equal(topicMatches(name, filter), expected));
  }
});

describe('acl.conf rules', () => {
  it('evaluates EMQX stock acl.conf', () => {
    const rules = parseAclRules(DEFAULT_ACL_RULES);
    assert.equal(evaluateAclRules(rules, subject({ peerhost: '127.0.0.1' }), subscribe('#')), 'allow');
    assert.equal(evaluateAclRules(rules, subject(), subscribe('#')), 'deny');
    assert.equal(evaluateAclRules(rules, subject(), subscribe('+/#')), 'deny');
    assert.equal(evaluateAclRules(rules, subject(), subscribe('$SYS/brokers')), 'deny');
    assert.equal(evaluateAclRules(rules, subject({ username: 'dashboard' }), subscribe('$SYS/brokers')), 'allow');
    assert.equal(evaluateAclRules(rules, subject(), publish('a/b')), 'allow');
  });

  it('supports who/action/topic forms, placeholders and first-match-wins', () => {
    const rules = parseAclRules(`
      %% comment line
      {allow, {'and', [{username, {re, "^dev-"}}, {ipaddr, "10.1.0.0/16"}]}, publish, ["d/\${username}/#"]}.
      {deny, {clientid, "bad"}, all, ["#"]}.
      {allow, {ipaddrs, ["192.168.1.1", "::1"]}, {subscribe, [{qos, [0, 1]}]}, [{eq, "x/#"}]}.
      {allow, all, {publish, [{retain, true}]}, ["r/%c"]}.
      {deny, all}.
    `);
    assert.equal(evaluateAclRules(rules, subject({ username: 'dev-7' }), publish('d/dev-7/t')), 'allow');
    assert.equal(evaluateAclRules(rules, subject({ username: 'dev-7' }), publish('d/dev-8/t')), 'deny');
    assert.equal(evaluateAclRules(rules, subject({ username: 'dev-7', peerhost: '10.2.0.1' }), publish('d/dev-7/t')), 'deny');
    assert.equal(evaluateAclRules(rules, subject({ peerhost: '::ffff:192.168.1.1' }), subscribe('x/#', 1)), 'allow');
    assert.equal(evaluateAclRules(rules, subject({ peerhost: '192.168.1.1' }), subscribe('x/#', 2)), 'deny', 'qos outside the list');
    assert.equal(evaluateAclRules(rules, subject({ peerhost: '192.168.1.1' }), subscribe('x/y')), 'deny', 'eq is literal');
    assert.equal(evaluateAclRules(rules, subject(), publish('r/c1', 0, true)), 'allow');
    assert.equal(evaluateAclRules(rules, subject(), publish('r/c1', 0, false)), 'deny');
    assert.equal(evaluateAclRules(rules, subject({ username: null }), publish('d//t')), 'deny', 'missing placeholder never matches');
  });

  it('returns no match when no rule applies', () => {
    const rules = parseAclRules('{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.');
    assert.equal(evaluateAclRules(rules, subject(), publish('a')), undefined);
  });

  it('rejects malformed text with a line number', () => {
    assert.throws(() => parseAclRules('{allow, all}\n{deny, all}.'), AclSyntaxError);
    assert.throws(() => parseAclRules('{allow, everyone}.'), /unsupported "who"|everyone/);
    assert.throws(() => parseAclRules('{allow, all, publish, ["a"]}.\n{allow, {ipaddr, "300.1.1.1"}, all, ["#"]}.'), /invalid IP/);
    assert.throws(() => parseAclRules('{allow, all, publish, ["a"}.'), /line 1/);
  });
});

describe('ACL returned by the authenticator', () => {
  it('checks new-format rules before the sources and falls through on no match', () => {
    const acl = parseResponseAcl([
      { permission: 'allow', action: 'publish', topic: 'u/${clientid}/#' },
      { permission: 'deny', action: 'all', topic: 'eq u/#' },
    ]);
    assert.equal(checkResponseAcl(acl, subject(), publish('u/c1/x')), 'allow');
    assert.equal(checkResponseAcl(acl, subject(), subscribe('u/#')), 'deny');
    assert.equal(checkResponseAcl(acl, subject(), subscribe('u/c1/x')), undefined);
  });

  it('treats the old {pub, sub, all} format as a whitelist and rejects malformed ACLs', () => {
    const acl = parseResponseAcl({ pub: ['p/#'], sub: ['s/+'] });
    assert.equal(checkResponseAcl(acl, subject(), publish('p/1')), 'allow');
    assert.equal(checkResponseAcl(acl, subject(), publish('s/1')), 'deny');
    assert.equal(checkResponseAcl(acl, subject(), subscribe('s/1')), 'allow');
    assert.throws(() => parseResponseAcl([{ permission: 'maybe', action: 'publish', topic: 't' }]));
    assert.throws(() => parseResponseAcl('all'));
  });
});

describe('templates and value formats', () => {
  it('renders allowed placeholders, keeps disallowed ones literally', () => {
    const vars = { username: 'u 1', clientid: 'c/1' };
    assert.equal(renderTemplate('${username}:${clientid}:${password}', vars, AUTHN_ALLOWED_VARS), 'u 1:c/1:');
    assert.equal(renderTemplate('/a/${clientid}?u=${username}', vars, AUTHN_ALLOWED_VARS, encodeURIComponent), '/a/c%2F1?u=u%201');
    assert.equal(renderTemplate('${topic}${$}', vars, AUTHN_ALLOWED_VARS), '${topic}$');
    assert.deepEqual(disallowedPlaceholders({ a: '${topic}', b: ['${client_attrs.x}', '${username}'] }, AUTHN_ALLOWED_VARS), ['topic']);
  });

  it('parses EMQX durations, sizes and rates', () => {
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('100ms'), 100);
    assert.equal(parseDuration('5 s'), undefined);
    assert.equal(parseByteSize('256KB'), 262_144);
    assert.equal(parseByteSize('1mb'), 1_048_576);
    assert.equal(parseRate('30/s'), 30);
    assert.equal(parseRate('100/10s'), 10);
    assert.equal(parseRate('1MB/s'), 1_048_576);
    assert.equal(parseRate('60/m'), 1);
    assert.equal(parseRate('infinity'), Number.POSITIVE_INFINITY);
    assert.equal(parseRate('fast'), undefined);
  });
});
