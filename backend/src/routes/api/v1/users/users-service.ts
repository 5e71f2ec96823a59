import { randomBytes } from 'node:crypto';
import { ADVISORY_LOCKS, inTransaction } from '@pepeunit/common';
import { preparedQuery } from '../../../../db/prepared.js';
import type { Pool } from 'pg';
import { userToken, type BackendConfig } from '@pepeunit/common';
import { NoAccessError, UserError, ValidationError } from '../../../../errors.js';
import type { Cipher } from '../../../../security/cipher.js';
import { hashPassword, isLegacyHash, verifyPassword } from '../../../../security/passwords.js';
import { LoginThrottle } from '../../../../security/login-throttle.js';
import { isoNaive } from '../../../../schemas/common.js';
import type { UserRead, UsersQuery } from '../../../../schemas/users.js';
import { nameRule, passwordRule, searchConditions, paging } from '../../../../services/validators.js';

interface UserRow {
  uuid: string;
  role: 'User' | 'Admin';
  status: 'Unverified' | 'Verified' | 'Blocked';
  login: string;
  telegram_chat_id: string | null;
  hashed_password: string;
  cipher_dynamic_salt: string;
  create_datetime: Date;
  grafana_org_name: string;
  grafana_org_id: string | null;
}

export function toUserRead(row: UserRow): UserRead {
  return {
    uuid: row.uuid,
    role: row.role,
    status: row.status,
    login: row.login,
    grafana_org_name: row.grafana_org_name,
    grafana_org_id: row.grafana_org_id,
    create_datetime: isoNaive(row.create_datetime)!,
  };
}

/** A scrypt hash of a random password, made once per process: unknown logins are checked against it. */
let dummy: Promise<string> | undefined;
function dummyHash(staticSalt: string): Promise<string> {
  dummy ??= hashPassword(randomBytes(24).toString('base64'), staticSalt).then((stored) => stored.hashedPassword);
  return dummy;
}

/** Registration, login, profile, block/unblock (pepeunit-backend.md §4.2). */
export class UsersService {
  private readonly throttle: LoginThrottle;

  constructor(
    private readonly pg: Pool,
    private readonly config: BackendConfig,
    private readonly cipher: Cipher,
  ) {
    this.throttle = new LoginThrottle({ maxFailures: config.loginLimits.failuresPerLogin, windowMs: config.loginLimits.windowSeconds * 1000 });
  }

  /** What `GET /users/{uuid}` shows (a prepared statement with the columns of UserRead). */
  async read(uuid: string): Promise<UserRead> {
    const { rows } = await preparedQuery<UserRow>(this.pg, 'user_read', 'SELECT uuid, role, status, login, grafana_org_name, grafana_org_id, create_datetime FROM users WHERE uuid = $1', [uuid]);
    if (!rows[0]) throw new ValidationError('The object does not exist');
    return toUserRead(rows[0]);
  }

  async get(uuid: string): Promise<UserRow> {
    const { rows } = await this.pg.query<UserRow>('SELECT * FROM users WHERE uuid = $1', [uuid]);
    if (!rows[0]) throw new ValidationError('The object does not exist');
    return rows[0];
  }

  async register(login: string, password: string): Promise<UserRow> {
    if (!nameRule(this.config).test(login)) throw new UserError('Login is not correct: 4-20 characters from A-Z a-z 0-9 _ . -');
    if (!passwordRule(this.config)(password)) throw new UserError('Password is not correct: 8-100 letters, digits and ASCII punctuation');
    const stored = await hashPassword(password, this.config.staticSalt);
    return inTransaction(this.pg, async (client) => {
      // Serialise registrations so exactly one "first user" becomes Admin.
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...ADVISORY_LOCKS.userSignUp]);
      const exists = await client.query('SELECT 1 FROM users WHERE login = $1', [login]);
      if (exists.rowCount) throw new UserError('Login is not unique');
      const first = await client.query('SELECT 1 FROM users LIMIT 1');
      const { rows } = await client.query<UserRow>(
        `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
         VALUES (gen_random_uuid(), $1, 'Unverified', $2, $3, $4, (now() AT TIME ZONE 'utc')) RETURNING *`,
        [first.rowCount ? 'User' : 'Admin', login, stored.hashedPassword, this.cipher.encrypt(stored.dynamicSalt)],
      );
      return rows[0]!;
    });
  }

  /**
   * Login by login or telegram chat id; returns a User JWT. Old reference hashes are upgraded.
   * An unknown login and a wrong password give the same answer after the same work (a password
   * check against a dummy hash), so answers do not tell which logins exist; failures per login
   * are throttled (`LoginThrottle`).
   */
  async login(credentials: string, password: string): Promise<string> {
    this.throttle.check(credentials);
    const { rows } = await this.pg.query<UserRow>('SELECT * FROM users WHERE login = $1 OR telegram_chat_id = $1 LIMIT 1', [credentials]);
    const user = rows[0];
    const ok = user
      ? await verifyPassword(password, user.hashed_password, this.config.staticSalt, () => this.cipher.decrypt(user.cipher_dynamic_salt))
      : await verifyPassword(password, await dummyHash(this.config.staticSalt), this.config.staticSalt, () => '').then(() => false);
    if (!user || !ok) {
      this.throttle.failed(credentials);
      throw new NoAccessError('Login or password is incorrect');
    }
    this.throttle.succeeded(credentials);
    if (isLegacyHash(user.hashed_password)) {
      const stored = await hashPassword(password, this.config.staticSalt);
      await this.pg.query('UPDATE users SET hashed_password = $2, cipher_dynamic_salt = $3 WHERE uuid = $1', [
        user.uuid,
        stored.hashedPassword,
        this.cipher.encrypt(stored.dynamicSalt),
      ]);
    }
    return userToken(user.uuid, this.config.secretKey, this.config.authTokenExpiration);
  }

  async update(selfUuid: string, patch: { login?: string | null; password?: string | null; current_password?: string | null }): Promise<UserRow> {
    const sets: string[] = [];
    const values: unknown[] = [selfUuid];
    if (patch.password != null) {
      // A stolen session must not be able to take the account: the current password is required,
      // and every token issued before the change stops working (tokens_valid_after).
      const self = await this.get(selfUuid);
      const ok = patch.current_password != null && (await verifyPassword(patch.current_password, self.hashed_password, this.config.staticSalt, () => this.cipher.decrypt(self.cipher_dynamic_salt)));
      if (!ok) throw new NoAccessError('The current password is required to change the password');
    }
    if (patch.login != null) {
      if (!nameRule(this.config).test(patch.login)) throw new UserError('Login is not correct: 4-20 characters from A-Z a-z 0-9 _ . -');
      const taken = await this.pg.query('SELECT 1 FROM users WHERE login = $1 AND uuid <> $2', [patch.login, selfUuid]);
      if (taken.rowCount) throw new UserError('Login is not unique');
      values.push(patch.login);
      sets.push(`login = $${values.length}`);
    }
    if (patch.password != null) {
      if (!passwordRule(this.config)(patch.password)) throw new UserError('Password is not correct: 8-100 letters, digits and ASCII punctuation');
      const stored = await hashPassword(patch.password, this.config.staticSalt);
      values.push(stored.hashedPassword, this.cipher.encrypt(stored.dynamicSalt));
      sets.push(`hashed_password = $${values.length - 1}`, `cipher_dynamic_salt = $${values.length}`);
      // Whole seconds, as token `iat`s are: a token issued in this second stays valid.
      sets.push(`tokens_valid_after = date_trunc('second', now() AT TIME ZONE 'utc')`);
    }
    if (sets.length > 0) {
      try {
        await this.pg.query(`UPDATE users SET ${sets.join(', ')} WHERE uuid = $1`, values);
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new UserError('Login is not unique');
        throw err;
      }
    }
    return this.get(selfUuid);
  }

  async block(uuid: string): Promise<void> {
    await this.get(uuid);
    await this.pg.query(`UPDATE users SET status = 'Blocked' WHERE uuid = $1`, [uuid]);
  }

  /** Unblock restores Verified when a Telegram chat is linked, else Unverified (reference). */
  async unblock(uuid: string): Promise<void> {
    await this.get(uuid);
    await this.pg.query(
      `UPDATE users SET status = CASE WHEN telegram_chat_id IS NOT NULL THEN 'Verified' ELSE 'Unverified' END WHERE uuid = $1`,
      [uuid],
    );
  }

  async list(query: UsersQuery): Promise<{ count: number; users: UserRow[] }> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (query.uuids?.length) {
      values.push(query.uuids);
      where.push(`uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.role?.length) {
      values.push(query.role);
      where.push(`role = ANY($${values.length}::varchar[])`);
    }
    if (query.status?.length) {
      values.push(query.status);
      where.push(`status = ANY($${values.length}::varchar[])`);
    }
    where.push(...searchConditions(query.search_string, ['login'], values));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const count = await this.pg.query<{ n: string }>(`SELECT count(*) AS n FROM users ${clause}`, values);
    const page = paging(query, this.config, values);
    const order = query.order_by_create_date === 'asc' ? 'ASC' : 'DESC';
    const { rows } = await this.pg.query<UserRow>(`SELECT * FROM users ${clause} ORDER BY create_datetime ${order}, uuid ${page}`, values);
    return { count: Number(count.rows[0]!.n), users: rows };
  }
}

export function randomCode(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}
