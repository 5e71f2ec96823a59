/**
 * Text no database takes (issue 10.8): a NUL character in any query parameter, path parameter or
 * JSON body field is refused with 422 before validation, so nothing is published or written and
 * no database error (500) follows. Postgres text and varchar cannot store U+0000; no field of the
 * API has a use for it. Multipart uploads (YAML, CSV, TOML) are checked by their own parsers.
 */
import fp from 'fastify-plugin';
import { ValidationError } from '../errors.js';

/** The path of the first string holding U+0000, or null. Depth-bounded (JSON bodies are small). */
export function findNul(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (depth > 32 || value === null || typeof value !== 'object') return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findNul(value[i], `${path}[${i}]`, depth + 1);
      if (found) return found;
    }
    return null;
  }
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (key.includes('\u0000')) return `${path}.<key>`;
    const found = findNul(item, `${path}.${key}`, depth + 1);
    if (found) return found;
  }
  return null;
}

export default fp(
  async (app) => {
    // Callback style: runs on every request, so no promise per request.
    app.addHook('preValidation', (request, _reply, done) => {
      const found = findNul(request.params, 'path') ?? findNul(request.query, 'query') ?? (request.isMultipart?.() ? null : findNul(request.body, 'body'));
      done(found ? new ValidationError(`${found} contains a NUL character (U+0000), which is not allowed`) : undefined);
    });
  },
  { name: 'pepeunit-input-guard', dependencies: [] },
);
