import type { BackendConfig } from '@pepeunit/common';
import { ValidationError } from '../errors.js';

const nameCache = new WeakMap<BackendConfig, RegExp>();

/** Entity names: 4-20 characters from PU_AVAILABLE_NAME_ENTITY_SYMBOLS (reference §0.5). */
export function nameRule(config: BackendConfig): RegExp {
  let re = nameCache.get(config);
  if (!re) {
    const symbols = config.symbols.nameEntity;
    re = new RegExp(`^[${symbols.replace(/[\]\\^]/g, '\\$&')}]{4,20}$`);
    nameCache.set(config, re);
  }
  return re;
}

const PUNCTUATION = `!"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}~`;

/** Passwords: 8-100 characters from letters, digits and ASCII punctuation (or PU_AVAILABLE_PASSWORD_SYMBOLS). */
export function passwordRule(config: BackendConfig): (password: string) => boolean {
  const custom = config.symbols.password;
  return (password) => {
    if (password.length < 8 || password.length > 100) return false;
    for (const ch of password) {
      if (custom) {
        if (!custom.includes(ch)) return false;
      } else if (!/[A-Za-z0-9]/.test(ch) && !PUNCTUATION.includes(ch)) return false;
    }
    return true;
  };
}

/**
 * Reference text search: split on whitespace; every word must match (ILIKE) at least one column.
 * LIKE wildcards in the words are escaped; values are bound.
 */
export function searchConditions(search: string | undefined, columns: readonly string[], values: unknown[]): string[] {
  if (!search) return [];
  const words = search.split(/\s+/).filter(Boolean).slice(0, 16);
  return words.map((word) => {
    values.push(`%${word.replace(/[\\%_]/g, (m) => `\\${m}`)}%`);
    const p = `$${values.length}`;
    return `(${columns.map((c) => `${c}::text ILIKE ${p}`).join(' OR ')})`;
  });
}

/**
 * LIMIT/OFFSET clause with bound values; limit 0/absent means unlimited (reference), max
 * PU_MAX_PAGINATION_SIZE.
 *
 * `shapeLimit` is for named (prepared) statements (db/prepared.ts): the limit is written into
 * the statement as an integer literal and a zero offset is left out. With `LIMIT $n` Postgres
 * plans a cached statement as if the limit were 10 % of the table, finds that generic plan far
 * dearer than a fresh one, and plans anew at every execution; with the limit in the text it
 * keeps the generic plan (units list: +36 % req/s, docs/BENCHMARKS.md). The limit is one of
 * 0..PU_MAX_PAGINATION_SIZE, checked here to be a safe integer, so it is a choice among
 * statement shapes (like the ORDER BY direction), never text from the request.
 */
export function paging(query: { offset?: number; limit?: number }, config: BackendConfig, values: unknown[], options: { shapeLimit?: boolean } = {}): string {
  const offset = query.offset ?? 0;
  const limit = query.limit ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ValidationError('offset must be an integer >= 0');
  if (!Number.isSafeInteger(limit) || limit < 0) throw new ValidationError('limit must be an integer >= 0');
  if (limit > config.maxPaginationSize) throw new ValidationError(`limit must be <= ${config.maxPaginationSize}`);
  const parts: string[] = [];
  if (limit > 0) {
    if (options.shapeLimit) parts.push(`LIMIT ${String(limit)}`);
    else {
      values.push(limit);
      parts.push(`LIMIT $${values.length}`);
    }
  }
  if (offset > 0 || !options.shapeLimit) {
    values.push(offset);
    parts.push(`OFFSET $${values.length}`);
  }
  return parts.join(' ');
}
