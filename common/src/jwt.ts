/**
 * HS256 JWTs with the reference claims (pepeunit-backend.md §4.1). The key is PU_SECRET_KEY used as
 * the literal UTF-8 string. Tokens without `exp` (Unit, Backend, GrafanaUnitNode) are deterministic
 * and byte-identical to the reference (compact JSON, header {"alg":"HS256","typ":"JWT"}, claims in
 * the reference order), so existing devices and the Go DataPipe keep working.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const AgentType = {
  Bot: 'Bot',
  User: 'User',
  Unit: 'Unit',
  Backend: 'Backend',
  Grafana: 'Grafana',
  GrafanaUnitNode: 'GrafanaUnitNode',
} as const;
export type AgentType = (typeof AgentType)[keyof typeof AgentType];

export type TokenClaims =
  | { uuid: string; type: 'User'; exp: number; iat?: number }
  | { uuid: string; type: 'Unit' }
  | { domain: string; type: 'Backend' }
  | { uuid: string; type: 'Grafana'; exp: number }
  | { uuid: string; panel_uuid: string; type: 'GrafanaUnitNode' };

const HEADER_B64 = b64url(Buffer.from('{"alg":"HS256","typ":"JWT"}'));

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

export function signToken(claims: TokenClaims, secretKey: string): string {
  const payload = b64url(Buffer.from(JSON.stringify(claims)));
  const signingInput = `${HEADER_B64}.${payload}`;
  const sig = createHmac('sha256', secretKey).update(signingInput).digest();
  return `${signingInput}.${b64url(sig)}`;
}

/**
 * A User JWT: the reference claims (`uuid`, `type`, `exp`) plus `iat` (ours, seconds), which lets
 * a password change revoke every token issued before it. Reference tokens without `iat` count
 * as issued `exp - lifetime`.
 */
export function userToken(uuid: string, secretKey: string, lifetimeSeconds: number, nowMs = Date.now()): string {
  const now = Math.floor(nowMs / 1000);
  return signToken({ uuid, type: 'User', exp: now + lifetimeSeconds, iat: now }, secretKey);
}

export function unitToken(uuid: string, secretKey: string): string {
  return signToken({ uuid, type: 'Unit' }, secretKey);
}

export function backendToken(domain: string, secretKey: string): string {
  return signToken({ domain, type: 'Backend' }, secretKey);
}

export function grafanaUnitNodeToken(nodeUuid: string, panelUuid: string, secretKey: string): string {
  return signToken({ uuid: nodeUuid, panel_uuid: panelUuid, type: 'GrafanaUnitNode' }, secretKey);
}

export type VerifyResult =
  | { ok: true; claims: Record<string, unknown> & { type: string } }
  | { ok: false; reason: 'expired' | 'invalid' };

/** Verifies signature, algorithm and expiry. Never throws. */
export function verifyToken(token: string, secretKey: string, nowMs = Date.now()): VerifyResult {
  if (typeof token !== 'string' || token.length > 8192) return { ok: false, reason: 'invalid' };
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'invalid' };
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'invalid' };
  }
  if (!header || typeof header !== 'object' || (header as { alg?: unknown }).alg !== 'HS256') return { ok: false, reason: 'invalid' };
  const expected = createHmac('sha256', secretKey).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'invalid' };
  if (!claims || typeof claims !== 'object' || typeof (claims as { type?: unknown }).type !== 'string') return { ok: false, reason: 'invalid' };
  const exp = (claims as { exp?: unknown }).exp;
  if (exp !== undefined) {
    if (typeof exp !== 'number' || !Number.isFinite(exp)) return { ok: false, reason: 'invalid' };
    if (exp * 1000 <= nowMs) return { ok: false, reason: 'expired' };
  }
  return { ok: true, claims: claims as Record<string, unknown> & { type: string } };
}
