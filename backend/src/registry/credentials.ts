/**
 * Per-user credentials of a private registry entry (pepeunit-backend.md §1.1): one AES-GCM
 * encrypted JSON map in `repository_registry.cipher_credentials_private_repository`:
 * `{"<user uuid>": {"credentials": {"username", "pat_token"}, "status": "Valid"|"NotVerified"|"Error"}}`.
 * Decrypted values live only in memory for the duration of one operation.
 */
import { inTransaction } from '@pepeunit/common';
import type { Pool } from 'pg';
import { CipherError, ValidationError } from '../errors.js';
import type { Cipher } from '../security/cipher.js';
import type { GitCredentials } from '../git/index.js';

export type CredentialStatus = 'Valid' | 'NotVerified' | 'Error';

export interface StoredCredential {
  credentials: { username: string; pat_token: string };
  status: CredentialStatus;
}

export type CredentialMap = Record<string, StoredCredential>;

/** What `get_credentials` shows instead of the token. */
export const MASKED_TOKEN = '********';

export function readCredentialMap(cipher: Cipher, stored: string | null): CredentialMap {
  if (!stored) return {};
  const text = cipher.decrypt(stored);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CipherError('Stored repository credentials are not valid JSON');
  }
  const map: CredentialMap = {};
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return map;
  for (const [userUuid, entry] of Object.entries(parsed as Record<string, unknown>)) {
    const value = entry as { credentials?: { username?: unknown; pat_token?: unknown }; status?: unknown };
    const username = value?.credentials?.username;
    const patToken = value?.credentials?.pat_token;
    if (typeof username !== 'string' || typeof patToken !== 'string') continue;
    const status = value.status === 'Valid' || value.status === 'Error' ? value.status : 'NotVerified';
    map[userUuid] = { credentials: { username, pat_token: patToken }, status };
  }
  return map;
}

export function writeCredentialMap(cipher: Cipher, map: CredentialMap): string | null {
  return Object.keys(map).length === 0 ? null : cipher.encrypt(JSON.stringify(map));
}

export function toGitCredentials(entry: StoredCredential): GitCredentials {
  return { username: entry.credentials.username, patToken: entry.credentials.pat_token };
}

/** The first `Valid` entry (what the Backend agent syncs with, §6.5). */
export function firstValidCredentials(map: CredentialMap): { userUuid: string; entry: StoredCredential } | null {
  for (const [userUuid, entry] of Object.entries(map)) if (entry.status === 'Valid') return { userUuid, entry };
  return null;
}

/**
 * Read-modify-write of a registry's credential map under a row lock, so two users setting
 * their credentials at the same time do not overwrite each other. Returns the new map.
 */
export async function updateCredentialMap(
  pool: Pool,
  cipher: Cipher,
  registryUuid: string,
  mutate: (map: CredentialMap) => void,
): Promise<CredentialMap> {
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<{ cipher_credentials_private_repository: string | null }>(
      'SELECT cipher_credentials_private_repository FROM repository_registry WHERE uuid = $1 FOR UPDATE',
      [registryUuid],
    );
    if (!rows[0]) throw new ValidationError(`RepositoryRegistry ${registryUuid} does not exist`);
    const map = readCredentialMap(cipher, rows[0].cipher_credentials_private_repository);
    mutate(map);
    await client.query('UPDATE repository_registry SET cipher_credentials_private_repository = $2 WHERE uuid = $1', [
      registryUuid,
      writeCredentialMap(cipher, map),
    ]);
    return map;
  });
}

/** Sets the status of one user's entry (no-op when the entry is gone or holds other credentials). */
export async function setCredentialStatus(
  pool: Pool,
  cipher: Cipher,
  registryUuid: string,
  userUuid: string,
  status: CredentialStatus,
  expected?: { username: string; pat_token: string },
): Promise<void> {
  await updateCredentialMap(pool, cipher, registryUuid, (map) => {
    const entry = map[userUuid];
    if (!entry) return;
    if (expected && (entry.credentials.username !== expected.username || entry.credentials.pat_token !== expected.pat_token)) return;
    entry.status = status;
  });
}
