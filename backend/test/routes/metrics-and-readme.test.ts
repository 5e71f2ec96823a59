/**
 * Two reference endpoints: `GET /metrics/` (instance counts, cached 10 minutes, Bot/User/Unit)
 * and `POST /units/convert_toml_to_md` (pepeunit.toml -> README Markdown, §7.8).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { unitToken } from '@pepeunit/common';
import type { RunningBackend } from '@pepeunit/backend';
import { pepeunitTomlToMarkdown } from '../../src/routes/api/v1/units/toml-markdown.ts';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

let backend: RunningBackend;
let t: TestBackend;
const api = '/pepeunit/api/v1';
let userToken = '';

before(async () => {
  t = await startTestBackend({ label: 'metrics' });
  backend = t.backend;
  for (const login of ['metrics_admin', 'metrics_user']) {
    await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login, password: 'Passw0rd!x' } });
  }
  userToken = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'metrics_user', password: 'Passw0rd!x' } })).json().token;
});
after(async () => {
  await t?.close();
});

function multipart(field: string, content: string | Buffer): { headers: Record<string, string>; payload: Buffer } {
  const boundary = `b-${randomUUID()}`;
  const payload = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="pepeunit.toml"\r\nContent-Type: application/toml\r\n\r\n`),
    Buffer.isBuffer(content) ? content : Buffer.from(content),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'x-auth-token': userToken }, payload };
}

test('GET /metrics/: the six counts for anonymous callers, users and units; cached for 10 minutes', async () => {
  const owner = (await backend.deps.pg.query(`SELECT uuid FROM users WHERE login = 'metrics_user'`)).rows[0].uuid;
  const unit = randomUUID();
  await backend.deps.pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', 'metrics_unit', now(), now(), true, $2)`, [unit, owner]);
  const anonymous = await backend.app.inject({ method: 'GET', url: `${api}/metrics/` });
  assert.equal(anonymous.statusCode, 200, anonymous.body);
  assert.deepEqual(anonymous.json(), { user_count: 2, repository_registry_count: 0, repo_count: 0, unit_count: 1, unit_node_count: 0, unit_node_edge_count: 0 });
  for (const token of [userToken, unitToken(unit, backend.deps.config.secretKey)]) {
    const res = await backend.app.inject({ method: 'GET', url: `${api}/metrics/`, headers: { 'x-auth-token': token } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().unit_count, 1);
  }
  await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: 'metrics_late', password: 'Passw0rd!x' } });
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/metrics/` })).json().user_count, 2, 'the cached answer (reference: 10 minutes)');
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/metrics/`, headers: { 'x-auth-token': 'forged.token.value' } })).statusCode, 403);
});

const FULL_TOML = `
[general]
name = "Fan Regulator ds18b20"
description = "Regulates fan speed"
language = "Micropython"
hardware = ["esp32", "ds18b20"]
firmware = [{name = "RELEASE-1.1.1", link = "https://example.com/releases/1.1.1"}]
stack = ["pepeunit_micropython_client"]
version = "1.1.1"
license = "AGPL v3 License"
authors = [{name = "Ivan", email = "ivan@example.com"}]

[video]
video = {preview = "https://example.com/prev.jpg", link = "https://example.com/watch"}

[images]
schema = "https://example.com/schema.png"

[models]
models = [{version = "v0", description = "Capsule", link = "https://example.com/m/capsule.stl"}]

[files]
"Fan \`4Pin\` documentation" = "https://example.com/fan.html"

[physical_io]
"client.settings.PIN_FAN" = "Duty cycle control"

[env_description]
PIN_FAN = "\`Pin\` of the fan"

[topic_assignment]
"current_temp/pepeunit" = "Current temperature"

[work_algorithm]
steps = ["Connect to \`WiFi\`", "Start the main loop"]

[installation]
steps = ["Flash the image"]
`;

const FULL_MARKDOWN = `# Fan Regulator ds18b20

Parameter | Implementation
-- | --
Description | Regulates fan speed
Lang | \`Micropython\`
Hardware | \`esp32\`, \`ds18b20\`
Firmware | [RELEASE-1.1.1](https://example.com/releases/1.1.1)
Stack | \`pepeunit_micropython_client\`
Version | 1.1.1
License | AGPL v3 License
Authors | Ivan <ivan@example.com>

## Video

[![video](https://example.com/prev.jpg)](https://example.com/watch)

## Schema

<div align="center"><img align="center" src="https://example.com/schema.png"></div>

## Models

Version | Description | Link
-- | -- | --
v0 | Capsule | [capsule.stl](https://example.com/m/capsule.stl)

## Files

1. [Fan \`4Pin\` documentation](https://example.com/fan.html)

## Physical IO

IO | Purpose
-- | --
\`client.settings.PIN_FAN\` | Duty cycle control

## Env variable assignment

Variable | Purpose
-- | --
\`PIN_FAN\` | \`Pin\` of the fan

## Assignment of Device Topics

Topic | Purpose
-- | --
\`current_temp/pepeunit\` | Current temperature

## Work algorithm

1. Connect to \`WiFi\`
2. Start the main loop

## Installation

1. Flash the image
`;

test('pepeunit.toml -> Markdown: every section in order, ending with one newline; absent sections are left out', () => {
  assert.equal(pepeunitTomlToMarkdown(FULL_TOML), FULL_MARKDOWN);
  assert.equal(pepeunitTomlToMarkdown('[general]\nname = "Only a name"\n'), '# Only a name\n');
  assert.equal(pepeunitTomlToMarkdown('[work_algorithm]\nsteps = []\n[files]\nx = ""\n'), '\n', 'empty sections produce nothing');
});

test('pepeunit.toml limits and syntax errors are ReadmeGenerationError', () => {
  const cases: Array<[string, RegExp]> = [
    ['[general\nname = 1', /not valid TOML/],
    [`[general]\nname = "${'n'.repeat(51)}"`, /general\.name is longer than 50/],
    [`[general]\ndescription = "${'d'.repeat(401)}"`, /general\.description is longer than 400/],
    [`[general]\nhardware = [${Array.from({ length: 31 }, (_, i) => `"h${i}"`).join(', ')}]`, /general\.hardware has more than 30 items/],
    [`[general]\nstack = "not a list"`, /general\.stack must be a list/],
    ['x'.repeat(10_001), /longer than 10000 characters/],
  ];
  for (const [source, message] of cases) {
    assert.throws(() => pepeunitTomlToMarkdown(source), (err: Error & { statusCode?: number }) => {
      assert.equal(err.statusCode, 422);
      assert.match(err.message, message);
      return true;
    });
  }
});

test('POST /units/convert_toml_to_md: multipart field "file" -> text/markdown for users; bad uploads are 422', async () => {
  const ok = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, ...multipart('file', FULL_TOML) });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.match(String(ok.headers['content-type']), /^text\/markdown/);
  assert.equal(ok.body, FULL_MARKDOWN);
  const wrongField = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, ...multipart('data', FULL_TOML) });
  assert.equal(wrongField.statusCode, 422);
  assert.match(wrongField.json().detail, /^422: 16: Readme Generation Error: /);
  const notUtf8 = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, ...multipart('file', Buffer.from([0x5b, 0xff, 0xfe, 0x5d])) });
  assert.equal(notUtf8.statusCode, 422);
  assert.match(notUtf8.json().detail, /not valid UTF-8/);
  const tooBig = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, ...multipart('file', '#'.repeat(50_000)) });
  assert.equal(tooBig.statusCode, 422);
  const notMultipart = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, headers: { 'x-auth-token': userToken }, payload: { file: FULL_TOML } });
  assert.equal(notMultipart.statusCode, 422);
  const anonymous = await backend.app.inject({ method: 'POST', url: `${api}/units/convert_toml_to_md`, ...multipart('file', FULL_TOML), headers: { 'content-type': multipart('file', FULL_TOML).headers['content-type']! } });
  assert.equal(anonymous.statusCode, 403, 'users only');
});
