/**
 * Encryption at rest, compatible with the reference (pepeunit-backend.md §4.7): AES-256-GCM with
 * key = base64-decode(PU_ENCRYPT_KEY), random 12-byte nonce, no AAD, stored as
 * `base64(nonce) + "." + base64(ciphertext ‖ 16-byte tag)`.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CipherError } from '../errors.js';

export class Cipher {
  readonly #key: Buffer;
  readonly #maxLength: number;
  constructor(encryptKeyBase64: string, maxLength: number) {
    this.#key = Buffer.from(encryptKeyBase64, 'base64');
    if (this.#key.length !== 32) throw new Error('PU_ENCRYPT_KEY must be base64 of 32 bytes');
    this.#maxLength = maxLength;
  }

  encrypt(plaintext: string): string {
    if (plaintext.length > this.#maxLength) {
      throw new CipherError(`The length of the encrypted content exceeds the maximum of ${this.#maxLength} characters`);
    }
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${nonce.toString('base64')}.${body.toString('base64')}`;
  }

  decrypt(stored: string): string {
    const dot = stored.indexOf('.');
    if (dot <= 0) throw new CipherError('Encrypted value has an unknown format');
    const nonce = Buffer.from(stored.slice(0, dot), 'base64');
    const body = Buffer.from(stored.slice(dot + 1), 'base64');
    if (nonce.length !== 12 || body.length < 16) throw new CipherError('Encrypted value has an unknown format');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce);
      decipher.setAuthTag(body.subarray(body.length - 16));
      return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      throw new CipherError('Encrypted value cannot be decrypted with this PU_ENCRYPT_KEY');
    }
  }
}
