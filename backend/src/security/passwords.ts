/**
 * Password hashing. New hashes use scrypt (node:crypto, N=2^15, r=8, p=1) stored as
 * `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`. Reference hashes (pepeunit-backend.md §4.2:
 * base64 PBKDF2-HMAC-SHA256 over (dynamic_salt + PU_STATIC_SALT), 100 000 iterations, 32 bytes)
 * still verify, so accounts move over; they are upgraded to scrypt at the next successful login.
 * PU_STATIC_SALT is mixed into both as a pepper.
 */
import { pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);
const scryptAsync = promisify(scrypt) as (password: string | Buffer, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;

const N = 1 << 15;
const R = 8;
const P = 1;

export interface StoredPassword {
  /** users.hashed_password */
  readonly hashedPassword: string;
  /** The per-user salt; the reference keeps it AES-GCM encrypted in users.cipher_dynamic_salt. */
  readonly dynamicSalt: string;
}

export async function hashPassword(password: string, staticSalt: string): Promise<StoredPassword> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password + staticSalt, salt, 32, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
  return {
    hashedPassword: `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`,
    dynamicSalt: salt.toString('base64'),
  };
}

/** True when `hashedPassword` is in the reference PBKDF2 format (to be upgraded). */
export function isLegacyHash(hashedPassword: string): boolean {
  return !hashedPassword.startsWith('scrypt$');
}

export async function verifyPassword(password: string, hashedPassword: string, staticSalt: string, legacyDynamicSalt: () => string): Promise<boolean> {
  if (hashedPassword.startsWith('scrypt$')) {
    const [, n, r, p, saltB64, keyB64] = hashedPassword.split('$');
    if (!n || !r || !p || !saltB64 || !keyB64) return false;
    const expected = Buffer.from(keyB64, 'base64');
    const key = await scryptAsync(password + staticSalt, Buffer.from(saltB64, 'base64'), expected.length, {
      N: Number(n),
      r: Number(r),
      p: Number(p),
      maxmem: 256 * 1024 * 1024,
    });
    return key.length === expected.length && timingSafeEqual(key, expected);
  }
  const expected = Buffer.from(hashedPassword, 'base64');
  if (expected.length !== 32) return false;
  const key = await pbkdf2Async(password, Buffer.from(legacyDynamicSalt() + staticSalt, 'utf8'), 100_000, 32, 'sha256');
  return timingSafeEqual(key, expected);
}

/** Reference PBKDF2 hash; used by tests to prove old accounts keep working. */
export async function referencePasswordHash(password: string, dynamicSalt: string, staticSalt: string): Promise<string> {
  return (await pbkdf2Async(password, Buffer.from(dynamicSalt + staticSalt, 'utf8'), 100_000, 32, 'sha256')).toString('base64');
}
