import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { signToken, userToken } from '@pepeunit/common';
import type { RunningBackend } from '@pepeunit/backend';
import { Cipher } from '../../src/security/cipher.ts';
import { referencePasswordHash } from '../../src/security/passwords.ts';
import { type TestDatabases } from '@pepeunit/tests/harness';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

let db: TestDatabases;
let backend: RunningBackend;
let t: TestBackend;
const api = '/pepeunit/api/v1';

before(async () => {
  t = await startTestBackend({ label: 'users' });
  ({ db, backend } = t);
});
after(async () => {
  await t?.close();
});

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, opts: { token?: string; body?: unknown } = {}) {
  const res = await backend.app.inject({
    method,
    url: api + url,
    headers: opts.token ? { 'x-auth-token': opts.token } : {},
    ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
  });
  return { status: res.statusCode, body: res.body ? res.json() : null };
}

const cfg = () => backend.deps.config;
let admin: { uuid: string; token: string };
let user: { uuid: string; token: string };

test('registration: the first user is Admin, later ones User; duplicates and bad logins are 422', async () => {
  const a = await call('POST', '/users', { body: { login: 'admin_one', password: 'Passw0rd!x' } });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  assert.equal(a.body.role, 'Admin');
  assert.equal(a.body.status, 'Unverified');
  assert.equal(a.body.hashed_password, undefined, 'hashes are never returned');
  const u = await call('POST', '/users', { body: { login: 'user_two', password: 'Passw0rd!y' } });
  assert.equal(u.body.role, 'User');
  const dup = await call('POST', '/users', { body: { login: 'user_two', password: 'Passw0rd!z' } });
  assert.equal(dup.status, 422);
  assert.equal(dup.body.detail, '422: 3: User Validation Error: Login is not unique');
  for (const login of ['abc', 'way_too_long_login_name_here', 'bad login', "x'; DROP TABLE users;--"]) {
    const bad = await call('POST', '/users', { body: { login, password: 'Passw0rd!z' } });
    assert.equal(bad.status, 422, login);
    assert.match(bad.body.detail, /^422: 3: User Validation Error: Login is not correct/);
  }
  const weak = await call('POST', '/users', { body: { login: 'weakling', password: 'short' } });
  assert.equal(weak.status, 422);
  const wrongType = await call('POST', '/users', { body: { login: 12345, password: ['x'] } });
  assert.equal(wrongType.status, 422);
  const count = await db.clickhouse; // keep the reference to the test databases alive
  assert.ok(count);
  const { rows } = await backend.deps.pg.query('SELECT count(*)::int AS n FROM users');
  assert.equal(rows[0].n, 2, 'bad input changed nothing');
});

test('login returns a token; a wrong password and an unknown login get the same 403; registering with a token is refused', async () => {
  const a = await call('POST', '/users/auth', { body: { credentials: 'admin_one', password: 'Passw0rd!x' } });
  assert.equal(a.status, 200);
  const u = await call('POST', '/users/auth', { body: { credentials: 'user_two', password: 'Passw0rd!y' } });
  const users = await call('GET', '/users?search_string=_&order_by_create_date=asc', { token: a.body.token });
  assert.equal(users.status, 200);
  admin = { uuid: users.body.users[0].uuid, token: a.body.token };
  user = { uuid: users.body.users[1].uuid, token: u.body.token };
  const wrong = await call('POST', '/users/auth', { body: { credentials: 'admin_one', password: 'nope-nope' } });
  assert.equal(wrong.status, 403);
  assert.equal(wrong.body.detail, '403: 1: No Access: Login or password is incorrect');
  // The answer does not tell which logins exist (issue 10.6).
  const unknown = await call('POST', '/users/auth', { body: { credentials: 'ghost_user', password: 'Passw0rd!x' } });
  assert.deepEqual(unknown, wrong);
  const withToken = await call('POST', '/users', { token: admin.token, body: { login: 'third_one', password: 'Passw0rd!x' } });
  assert.equal(withToken.status, 403);
});

test('tokens: missing, expired, forged and wrong-type tokens are refused with the reference messages', async () => {
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: admin.token })).status, 200);
  assert.equal((await call('GET', `/users/${admin.uuid}`)).status, 403);
  const expired = userToken(admin.uuid, cfg().secretKey, 60, Date.now() - 3600_000);
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: expired })).body.detail, '403: 1: No Access: Token expired');
  const forged = userToken(admin.uuid, 'another-secret', 60);
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: forged })).body.detail, '403: 1: No Access: Token is invalid');
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: 'garbage' })).body.detail, '403: 1: No Access: Token is invalid');
  const ghost = userToken('00000000-0000-4000-8000-000000000000', cfg().secretKey, 60);
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: ghost })).body.detail, '403: 1: No Access: User not found');
  const odd = signToken({ uuid: admin.uuid, type: 'Unit' }, cfg().secretKey);
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: odd })).body.detail, '403: 1: No Access: Unit not found');
});

test('admin blocks and unblocks; a blocked user is locked out; non-admins cannot block', async () => {
  assert.equal((await call('PATCH', `/users/block/${admin.uuid}`, { token: user.token })).status, 403);
  assert.equal((await call('PATCH', `/users/block/${user.uuid}`, { token: admin.token })).status, 204);
  const blocked = await call('GET', `/users/${user.uuid}`, { token: user.token });
  assert.equal(blocked.body.detail, '403: 1: No Access: Agent is blocked or not found');
  const seen = await call('GET', `/users/${user.uuid}`, { token: admin.token });
  assert.equal(seen.body.status, 'Blocked');
  assert.equal((await call('PATCH', `/users/unblock/${user.uuid}`, { token: admin.token })).status, 204);
  assert.equal((await call('GET', `/users/${user.uuid}`, { token: user.token })).body.status, 'Unverified');
});

test('profile update changes only the caller; a taken login is 422', async () => {
  const taken = await call('PATCH', `/users/${admin.uuid}`, { token: user.token, body: { login: 'admin_one' } });
  assert.equal(taken.status, 422);
  // Changing the password needs the current one (issue 10.16) ...
  const noCurrent = await call('PATCH', `/users/${admin.uuid}`, { token: user.token, body: { login: 'user_renamed', password: 'N3wPassw0rd' } });
  assert.equal(noCurrent.status, 403);
  const wrongCurrent = await call('PATCH', `/users/${admin.uuid}`, { token: user.token, body: { login: 'user_renamed', password: 'N3wPassw0rd', current_password: 'guess-guess' } });
  assert.equal(wrongCurrent.status, 403);
  assert.equal((await call('GET', `/users/${user.uuid}`, { token: admin.token })).body.login, 'user_two', 'nothing changed');
  // ... and revokes the tokens issued before it, the one that made the change included.
  // A token issued a few seconds before the change (tokens carry whole seconds).
  const oldToken = userToken(user.uuid, cfg().secretKey, 3600, Date.now() - 5000);
  assert.equal((await call('GET', `/users/${user.uuid}`, { token: oldToken })).status, 200);
  const renamed = await call('PATCH', `/users/${admin.uuid}`, { token: user.token, body: { login: 'user_renamed', password: 'N3wPassw0rd', current_password: 'Passw0rd!y' } });
  assert.equal(renamed.status, 200);
  const revoked = await call('GET', `/users/${user.uuid}`, { token: oldToken });
  assert.equal(revoked.status, 403);
  assert.match(revoked.body.detail, /Token revoked/);
  assert.equal(renamed.body.uuid, user.uuid, 'the path uuid is ignored; the caller is updated');
  assert.equal(renamed.body.login, 'user_renamed');
  const relogin = await call('POST', '/users/auth', { body: { credentials: 'user_renamed', password: 'N3wPassw0rd' } });
  assert.equal(relogin.status, 200);
  user = { ...user, token: relogin.body.token };
  assert.equal((await call('GET', `/users/${user.uuid}`, { token: user.token })).status, 200, 'a token issued after the change works');
  assert.equal((await call('GET', `/users/${admin.uuid}`, { token: admin.token })).body.login, 'admin_one');
});

test('list filters by role, search and pagination; limit above the maximum is refused', async () => {
  const list = await call('GET', '/users?role=User', { token: admin.token });
  assert.equal(list.body.count, 1);
  assert.equal(list.body.users[0].login, 'user_renamed');
  const search = await call('GET', '/users?search_string=ADMIN', { token: admin.token });
  assert.equal(search.body.count, 1);
  const page = await call('GET', '/users?limit=1&offset=1&order_by_create_date=asc', { token: admin.token });
  assert.equal(page.body.count, 2);
  assert.equal(page.body.users.length, 1);
  assert.equal(page.body.users[0].login, 'user_renamed');
  assert.equal((await call('GET', '/users?limit=501', { token: admin.token })).status, 422);
  const injection = await call('GET', `/users?search_string=${encodeURIComponent("%' OR 1=1 --")}`, { token: admin.token });
  assert.equal(injection.status, 200);
  assert.equal(injection.body.count, 0);
});

test('accounts created by the reference backend (PBKDF2 hashes) still log in and are upgraded', async () => {
  const config = cfg();
  const cipher = new Cipher(config.encryptKey, config.maxCipherLength);
  const dynamicSalt = randomBytes(16).toString('base64');
  const legacy = await referencePasswordHash('OldPassw0rd', dynamicSalt, config.staticSalt);
  await backend.deps.pg.query(
    `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
     VALUES (gen_random_uuid(), 'User', 'Verified', 'legacy_user', $1, $2, now())`,
    [legacy, cipher.encrypt(dynamicSalt)],
  );
  assert.equal((await call('POST', '/users/auth', { body: { credentials: 'legacy_user', password: 'wrong-pass' } })).status, 403);
  assert.equal((await call('POST', '/users/auth', { body: { credentials: 'legacy_user', password: 'OldPassw0rd' } })).status, 200);
  const { rows } = await backend.deps.pg.query(`SELECT hashed_password FROM users WHERE login = 'legacy_user'`);
  assert.match(rows[0].hashed_password, /^scrypt\$/);
  assert.equal((await call('POST', '/users/auth', { body: { credentials: 'legacy_user', password: 'OldPassw0rd' } })).status, 200);
});

test('unknown body fields are ignored as the reference does; known fields stay validated', async () => {
  // `role` and `status` are not fields of the create body: dropped, never obeyed.
  const created = await call('POST', '/users', { body: { login: 'extra_fields', password: 'Passw0rd!x', role: 'Admin', status: 'Verified', unknown: { nested: [1, 2] } } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.role, 'User');
  assert.equal(created.body.status, 'Unverified');
  const auth = await call('POST', '/users/auth', { body: { credentials: 'extra_fields', password: 'Passw0rd!x', remember_me: true } });
  assert.equal(auth.status, 200, JSON.stringify(auth.body));
  const badKnown = await call('POST', '/users', { body: { login: 'ab', password: 'Passw0rd!x', extra: 1 } });
  assert.equal(badKnown.status, 422, 'a bad known field is still refused');
  const missing = await call('POST', '/users', { body: { password: 'Passw0rd!x', extra: 1 } });
  assert.equal(missing.status, 422, 'a missing required field is still refused');
});

test('login throttling: failures per account and attempts per address answer 429 (issue 10.6)', async () => {
  // A separate app with small limits, so the other tests' logins do not count.
  const limited = (await t.another({ PU_LOGIN_FAILURES_PER_LOGIN: '3', PU_LOGIN_ATTEMPTS_PER_ADDRESS: '8' })).backend;
  try {
    const login = (credentials: string, password: string) => limited.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials, password } });
    for (let i = 0; i < 3; i++) assert.equal((await login('admin_one', `wrong-${i}`)).statusCode, 403);
    const locked = await login('admin_one', 'Passw0rd!x');
    assert.equal(locked.statusCode, 429, 'the account is throttled, even with the right password');
    assert.match(locked.json().detail, /^429: 18: Too Many Requests: Too many failed logins for this account; retry in \d+ s$/);
    // Other accounts still work from this address until the per-address limit.
    const other = await login('user_renamed', 'N3wPassw0rd');
    assert.equal(other.statusCode, 200, other.body);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await login('user_renamed', 'N3wPassw0rd')).statusCode);
    assert.ok(statuses.includes(429), `the address is throttled after 8 attempts: ${statuses.join(', ')}`);
    const addressLimited = await login('user_renamed', 'N3wPassw0rd');
    assert.equal(addressLimited.statusCode, 429);
    assert.match(addressLimited.json().detail, /Too many login attempts from this address/);
  } finally {
    await limited.close();
  }
});
