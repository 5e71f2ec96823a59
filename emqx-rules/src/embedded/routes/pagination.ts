import { validationError } from '../api-error.js';
import type { Page } from '../../emqx-types.js';

/** `page` (default 1) and `limit` (default 100, 1..10000) as EMQX reads them. */
export function pageParams(query: Record<string, unknown>): { page: number; limit: number } {
  const read = (name: string, fallback: number, max: number): number => {
    const raw = query[name];
    if (raw === undefined || raw === '') return fallback;
    const text = Array.isArray(raw) ? String(raw[raw.length - 1]) : String(raw);
    if (!/^\d+$/.test(text)) throw validationError(name, 'not an integer', { value: text });
    const value = Number(text);
    if (value < 1 || value > max) throw validationError(name, `must be between 1 and ${max}`, { value });
    return value;
  };
  return { page: read('page', 1, Number.MAX_SAFE_INTEGER), limit: read('limit', 100, 10_000) };
}

export function paginate<T>(items: readonly T[], page: number, limit: number): Page<T> {
  const start = (page - 1) * limit;
  const data = items.slice(start, start + limit);
  return { data, meta: { page, limit, count: items.length, hasnext: start + limit < items.length } };
}

/** A query parameter given once or repeated, as a list. */
export function repeated(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}
