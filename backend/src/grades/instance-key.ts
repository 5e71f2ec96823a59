/**
 * The instance's Ed25519 key: generated once (the first backend to need it inserts the row; a
 * concurrent replica's insert is ignored and it reads the winner's), the private half stored
 * encrypted with PU_ENCRYPT_KEY, the public half published (GET /pepeunit and the well-known URL).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { Pool } from 'pg';
import type { Cipher } from '../security/cipher.js';
import { keyId } from './report.js';

export interface InstanceKey {
  readonly algorithm: 'Ed25519';
  /** base64 of the SubjectPublicKeyInfo DER. */
  readonly publicKey: string;
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly createdAt: string;
}

export async function loadOrCreateInstanceKey(pg: Pool, cipher: Cipher): Promise<InstanceKey> {
  const read = async () => (await pg.query('SELECT public_key, private_key_encrypted, create_datetime FROM instance_keys WHERE id = 1')).rows[0];
  let row = await read();
  if (!row) {
    const pair = generateKeyPairSync('ed25519');
    const publicKey = pair.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    const privateDer = pair.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
    await pg.query('INSERT INTO instance_keys (id, public_key, private_key_encrypted) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING', [publicKey, cipher.encrypt(privateDer)]);
    row = await read();
  }
  const privateKey = createPrivateKey({ key: Buffer.from(cipher.decrypt(row.private_key_encrypted), 'base64'), format: 'der', type: 'pkcs8' });
  return { algorithm: 'Ed25519', publicKey: row.public_key, keyId: keyId(row.public_key), privateKey, createdAt: (row.create_datetime as Date).toISOString() };
}
