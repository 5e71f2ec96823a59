// What the broker's log may say about a credential: a short SHA-256 fingerprint. It tells
// whether two log lines concern the same username (for Pepeunit's units, a JWT) without being
// usable as one, since a token cannot be recovered from it.
import { createHash } from 'node:crypto';

export function fingerprint(secret: string | null | undefined): string | undefined {
  if (secret === null || secret === undefined) return undefined;
  return `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}
