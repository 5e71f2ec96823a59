import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  systemTopic,
  unitNodeTopic,
  parseSystemTopic,
  parsePipeTopic,
  systemTopicsFilter,
  unitNodePipeFilter,
  backendToken,
  unitToken,
  userToken,
  verifyToken,
  signToken,
} from '@pepeunit/common';

const unit = '9d0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b';

test('topic builders follow the reference scheme', () => {
  assert.equal(systemTopic('unit.example.com', 'output_base_topic', unit, 'state'), `unit.example.com/output_base_topic/${unit}/state/pepeunit`);
  assert.equal(unitNodeTopic('d', unit, 'current_temp/pepeunit'), `d/${unit}/pepeunit`);
  assert.equal(unitNodeTopic('d', unit, 'current_temp'), `d/${unit}`);
  assert.equal(systemTopicsFilter('d'), 'd/+/+/+/pepeunit');
  assert.equal(unitNodePipeFilter('d'), 'd/+/pepeunit');
});

test('topic parsers accept only well-formed topics', () => {
  assert.deepEqual(parseSystemTopic(`d/output_base_topic/${unit}/log/pepeunit`), { domain: 'd', destination: 'output_base_topic', unitUuid: unit, purpose: 'log' });
  assert.equal(parseSystemTopic(`d/other/${unit}/log/pepeunit`), null);
  assert.equal(parseSystemTopic(`d/output_base_topic/not-a-uuid/log/pepeunit`), null);
  assert.equal(parseSystemTopic(`d/output_base_topic/${unit}/log`), null);
  assert.deepEqual(parsePipeTopic(`d/${unit.toUpperCase()}/pepeunit`), { domain: 'd', nodeUuid: unit });
  assert.equal(parsePipeTopic(`d/${unit}`), null);
  assert.equal(parsePipeTopic(`d/${unit}/x/pepeunit`), null);
});

test('Backend and Unit tokens are deterministic HS256 over the literal key', () => {
  const key = 'some-secret';
  const token = backendToken('unit.example.com', key);
  const [h, p, s] = token.split('.') as [string, string, string];
  assert.equal(Buffer.from(h, 'base64url').toString(), '{"alg":"HS256","typ":"JWT"}');
  assert.equal(Buffer.from(p, 'base64url').toString(), '{"domain":"unit.example.com","type":"Backend"}');
  assert.equal(s, createHmac('sha256', Buffer.from(key, 'utf8')).update(`${h}.${p}`).digest('base64url'));
  assert.equal(backendToken('unit.example.com', key), token);
  assert.equal(Buffer.from(unitToken(unit, key).split('.')[1]!, 'base64url').toString(), `{"uuid":"${unit}","type":"Unit"}`);
});

test('verification rejects forged, expired, malformed and alg-swapped tokens', () => {
  const key = 'k';
  const now = Date.now();
  assert.equal(verifyToken(userToken(unit, key, 60, now), key, now).ok, true);
  assert.deepEqual(verifyToken(userToken(unit, key, 60, now - 120_000), key, now), { ok: false, reason: 'expired' });
  assert.deepEqual(verifyToken(userToken(unit, 'other', 60, now), key, now), { ok: false, reason: 'invalid' });
  assert.deepEqual(verifyToken('a.b', key), { ok: false, reason: 'invalid' });
  assert.deepEqual(verifyToken('', key), { ok: false, reason: 'invalid' });
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"uuid":"x","type":"Unit"}').toString('base64url')}.`;
  assert.equal(verifyToken(none, key).ok, false);
  const tampered = signToken({ uuid: unit, type: 'Unit' }, key).replace(/\.[^.]+\./, `.${Buffer.from(`{"uuid":"${unit}","type":"Backend"}`).toString('base64url')}.`);
  assert.equal(verifyToken(tampered, key).ok, false);
});
