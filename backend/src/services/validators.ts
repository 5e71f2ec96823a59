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

/** LIMIT/OFFSET clause with bound values; limit 0/absent means unlimited (reference), max PU_MAX_PAGINATION_SIZE. */
export function paging(query: { offset?: number; limit?: number }, config: BackendConfig, values: unknown[]): string {
  const offset = query.offset ?? 0;
  const limit = query.limit ?? 0;
  if (offset < 0) throw new ValidationError('offset must be >= 0');
  if (limit < 0) throw new ValidationError('limit must be >= 0');
  if (limit > config.maxPaginationSize) throw new ValidationError(`limit must be <= ${config.maxPaginationSize}`);
  values.push(offset);
  let clause = `OFFSET $${values.length}`;
  if (limit > 0) {
    values.push(limit);
    clause = `LIMIT $${values.length} ` + clause;
  }
  return clause;
}
