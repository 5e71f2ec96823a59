/**
 * Telegram account binding (pepeunit-backend.md §4.3, hardened as in wave2-integrations.md §1.6):
 * `GET /users/generate_verification_link/` stores a one-time code (128 random bits, base64url, 22
 * characters; valid PU_TELEGRAM_VERIFICATION_CODE_TTL seconds) and answers
 * `<PU_TELEGRAM_BOT_LINK>?start=<code>`; the bot's `/start <code>` consumes it atomically
 * (DELETE … RETURNING: single use, also across replicas) and binds the chat to the user.
 */
import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';

export type BindOutcome =
  | { status: 'bound'; userUuid: string }
  | { status: 'invalid' }
  /** This chat already belongs to another account. */
  | { status: 'chat_taken' };

/** Codes one user may hold at once (older ones are dropped). */
const MAX_CODES_PER_USER = 5;

export class TelegramBinding {
  constructor(private readonly pg: Pool, private readonly ttlSeconds: number) {}

  async createCode(userUuid: string): Promise<string> {
    const code = randomBytes(16).toString('base64url');
    const client = await this.pg.connect();
    try {
      await client.query('BEGIN');
      await client.query('DELETE FROM telegram_verification_codes WHERE expires_at <= now()');
      await client.query(
        `DELETE FROM telegram_verification_codes WHERE user_uuid = $1 AND code NOT IN
           (SELECT code FROM telegram_verification_codes WHERE user_uuid = $1 ORDER BY expires_at DESC LIMIT $2)`,
        [userUuid, MAX_CODES_PER_USER - 1],
      );
      await client.query('INSERT INTO telegram_verification_codes (code, user_uuid, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))', [code, userUuid, this.ttlSeconds]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    return code;
  }

  /** The user bound to a chat (null when none). */
  async userOfChat(chatId: number): Promise<{ uuid: string; role: string; status: string; login: string } | null> {
    const { rows } = await this.pg.query<{ uuid: string; role: string; status: string; login: string }>('SELECT uuid::text AS uuid, role, status, login FROM users WHERE telegram_chat_id = $1', [String(chatId)]);
    return rows[0] ?? null;
  }

  async consume(code: string, chatId: number): Promise<BindOutcome> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(code)) return { status: 'invalid' };
    const client = await this.pg.connect();
    try {
      await client.query('BEGIN');
      const taken = await client.query<{ user_uuid: string }>('DELETE FROM telegram_verification_codes WHERE code = $1 AND expires_at > now() RETURNING user_uuid::text', [code]);
      const userUuid = taken.rows[0]?.user_uuid;
      if (!userUuid) {
        await client.query('ROLLBACK');
        return { status: 'invalid' };
      }
      const other = await client.query('SELECT 1 FROM users WHERE telegram_chat_id = $1 AND uuid <> $2', [String(chatId), userUuid]);
      if (other.rowCount) {
        // The code is spent either way (single use).
        await client.query('COMMIT');
        return { status: 'chat_taken' };
      }
      // A blocked account stays blocked; others become Verified (reference).
      await client.query(
        `UPDATE users SET telegram_chat_id = $2, status = CASE WHEN status = 'Blocked' THEN status ELSE 'Verified' END WHERE uuid = $1`,
        [userUuid, String(chatId)],
      );
      await client.query('COMMIT');
      return { status: 'bound', userUuid };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }
}
