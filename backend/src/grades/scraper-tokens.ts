/**
 * Scraper tokens: the admin creates, lists and revokes them; holders may read the load_limit
 * report. Tokens are 32 random bytes (base64url, prefixed `pus_`); only their SHA-256 is stored,
 * so the token is shown once. Revoked tokens are refused.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Pool } from 'pg';

export const SCRAPER_TOKEN_PREFIX = 'pus_';
const TOKEN_SHAPE = /^pus_[A-Za-z0-9_-]{43}$/;

export interface ScraperTokenRow {
  uuid: string;
  name: string;
  token_prefix: string;
  creator_uuid: string | null;
  create_datetime: string;
  last_used_datetime: string | null;
  revoked_datetime: string | null;
}

const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');
const COLUMNS = 'uuid, name, token_prefix, creator_uuid, create_datetime, last_used_datetime, revoked_datetime';
const toRow = (r: Record<string, unknown>): ScraperTokenRow => ({
  uuid: String(r.uuid),
  name: String(r.name),
  token_prefix: String(r.token_prefix),
  creator_uuid: (r.creator_uuid as string | null) ?? null,
  create_datetime: (r.create_datetime as Date).toISOString(),
  last_used_datetime: r.last_used_datetime ? (r.last_used_datetime as Date).toISOString() : null,
  revoked_datetime: r.revoked_datetime ? (r.revoked_datetime as Date).toISOString() : null,
});

export class ScraperTokens {
  constructor(private readonly pg: Pool) {}

  async create(name: string, adminUuid: string): Promise<{ token: string; row: ScraperTokenRow }> {
    const token = SCRAPER_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const { rows } = await this.pg.query(
      `INSERT INTO scraper_tokens (uuid, name, token_hash, token_prefix, creator_uuid) VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
      [randomUUID(), name, hashToken(token), token.slice(0, 10), adminUuid],
    );
    return { token, row: toRow(rows[0]) };
  }

  async list(): Promise<ScraperTokenRow[]> {
    return (await this.pg.query(`SELECT ${COLUMNS} FROM scraper_tokens ORDER BY create_datetime, uuid`)).rows.map(toRow);
  }

  /** Revokes a token; false when there is none with this uuid. Revoking twice keeps the first time. */
  async revoke(uuid: string): Promise<ScraperTokenRow | null> {
    const { rows } = await this.pg.query(
      `UPDATE scraper_tokens SET revoked_datetime = coalesce(revoked_datetime, now() AT TIME ZONE 'utc') WHERE uuid = $1 RETURNING ${COLUMNS}`,
      [uuid],
    );
    return rows[0] ? toRow(rows[0]) : null;
  }

  /** 'ok' for a live token (its last use is recorded), else why it is refused. */
  async check(token: string): Promise<'ok' | 'unknown' | 'revoked'> {
    if (!TOKEN_SHAPE.test(token)) return 'unknown';
    const { rows } = await this.pg.query(
      `UPDATE scraper_tokens SET last_used_datetime = CASE WHEN revoked_datetime IS NULL THEN now() AT TIME ZONE 'utc' ELSE last_used_datetime END
        WHERE token_hash = $1 RETURNING revoked_datetime`,
      [hashToken(token)],
    );
    if (!rows[0]) return 'unknown';
    return rows[0].revoked_datetime ? 'revoked' : 'ok';
  }
}
