/**
 * The `load_limit` report: what this instance can carry (its grade, with every iteration of the
 * load check that measured it) and what it charges, made tamper-evident:
 *  - the iterations form a hash chain: `hash_i = SHA-256(prev_hash_i ‖ "\n" ‖ canonical(body_i))`
 *    with `prev_hash_0` = the run's genesis hash = SHA-256(canonical(run header)), so an
 *    iteration cannot be changed, dropped, reordered or inserted without breaking the chain;
 *  - the whole report except `signature` is signed with the instance's Ed25519 key over its
 *    canonical JSON (canonical.ts).
 * Everything here is pure (node:crypto only), so the offline verifier uses the same code.
 */
import { createHash, createPublicKey, sign as signBytes, verify as verifyBytes, type KeyObject } from 'node:crypto';
import { canonicalJson } from './canonical.js';

export const REPORT_FORMAT = 'pepeunit-load-limit/1';

/** The service level an iteration must meet to count as held. */
export interface ServiceLevel {
  /** Largest fraction of messages lost (0.001 = 0.1 %). */
  max_loss: number;
  /** Largest 99th percentile of delivery latency, in milliseconds. */
  max_latency_p99_ms: number;
  /** Largest fraction of publish or connection errors. */
  max_error_rate: number;
}

/** One step of the ramp, as measured (the hashed body). */
export interface IterationBody {
  index: number;
  units: number;
  seconds: number;
  offered_mps: number;
  achieved_mps: number;
  sent: number;
  received: number;
  loss: number;
  errors: number;
  error_rate: number;
  latency_ms: { p50: number; p99: number; max: number };
  resources: { load_average_1m: number; cpus: number; process_cpu_percent: number; rss_mb: number; free_memory_mb: number };
  held: boolean;
  /** Which part of the service level broke, empty when it held. */
  violations: string[];
}

export interface ChainedIteration extends IterationBody {
  prev_hash: string;
  hash: string;
}

/** What identifies a run; its hash starts the chain. */
export interface RunHeader {
  run_uuid: string;
  started_at: string;
  parameters: Record<string, unknown>;
}

export interface GradeSection extends RunHeader {
  finished_at: string | null;
  status: string;
  /** Highest achieved MPS of an iteration that held; null when none held. */
  mps: number | null;
  stop_reason: string | null;
  genesis_hash: string;
  iterations: ChainedIteration[];
  /** Hash of the last iteration (the genesis hash when there are none). */
  chain_head: string;
}

export interface Prices {
  currency: string;
  billing_period_days: number;
  free_mps: number;
  /** Decimal string, per MPS above the free amount per billing period. */
  mps_price: string;
  free_aggregation_topics: number;
  /** Decimal string, per aggregation topic above the free amount per billing period. */
  aggregation_topic_price: string;
}

export interface UnsignedReport {
  format: typeof REPORT_FORMAT;
  instance: { domain: string; key_id: string; public_key: string };
  software: { name: string; version: string };
  generated_at: string;
  grade: GradeSection | null;
  prices: Prices;
}

export interface SignedReport extends UnsignedReport {
  signature: { algorithm: 'Ed25519'; key_id: string; value: string };
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function genesisHash(header: RunHeader): string {
  return sha256Hex(canonicalJson(header));
}

export function chainHash(prevHash: string, body: IterationBody): string {
  return sha256Hex(`${prevHash}\n${canonicalJson(body)}`);
}

/** Key id: the first 32 hex digits of SHA-256 over the public key's SPKI DER. */
export function keyId(publicKeySpkiBase64: string): string {
  return createHash('sha256').update(Buffer.from(publicKeySpkiBase64, 'base64')).digest('hex').slice(0, 32);
}

export function publicKeyFromSpki(publicKeySpkiBase64: string): KeyObject {
  return createPublicKey({ key: Buffer.from(publicKeySpkiBase64, 'base64'), format: 'der', type: 'spki' });
}

export function signReport(report: UnsignedReport, privateKey: KeyObject): SignedReport {
  const value = signBytes(null, Buffer.from(canonicalJson(report), 'utf8'), privateKey).toString('base64');
  return { ...report, signature: { algorithm: 'Ed25519', key_id: report.instance.key_id, value } };
}

export interface VerifyOptions {
  /** The instance's public key obtained independently (well-known URL); otherwise the report's own key is used, which proves integrity but not origin. */
  trustedPublicKey?: string;
}

export interface VerifyResult {
  ok: boolean;
  problems: string[];
  /** True when the signature was checked against a key given by the caller. */
  keyTrusted: boolean;
}

function iterationBody(it: ChainedIteration): IterationBody {
  const { prev_hash: _p, hash: _h, ...body } = it;
  return body;
}

/** Checks the format, the hash chain, the grade's consistency with the iterations, and the signature. */
export function verifyReport(document: unknown, options: VerifyOptions = {}): VerifyResult {
  const problems: string[] = [];
  const report = document as Partial<SignedReport> | null;
  if (!report || typeof report !== 'object') return { ok: false, problems: ['not a JSON object'], keyTrusted: false };
  if (report.format !== REPORT_FORMAT) problems.push(`format is ${JSON.stringify(report.format)}, expected ${REPORT_FORMAT}`);
  const signature = report.signature;
  const publicKey = options.trustedPublicKey ?? report.instance?.public_key;
  if (!signature || signature.algorithm !== 'Ed25519' || typeof signature.value !== 'string') problems.push('no Ed25519 signature');
  if (typeof publicKey !== 'string' || publicKey === '') problems.push('no public key');
  if (options.trustedPublicKey && report.instance?.public_key !== options.trustedPublicKey) problems.push('the report names a different public key than the trusted one');
  if (report.instance && typeof report.instance.public_key === 'string' && report.instance.key_id !== keyId(report.instance.public_key)) problems.push('instance.key_id does not match instance.public_key');
  const grade = report.grade;
  if (grade) {
    try {
      const { run_uuid, started_at, parameters } = grade;
      const genesis = genesisHash({ run_uuid, started_at, parameters });
      if (genesis !== grade.genesis_hash) problems.push('genesis_hash does not match the run header');
      let prev = grade.genesis_hash;
      grade.iterations.forEach((it, i) => {
        if (it.index !== i) problems.push(`iteration ${i} has index ${it.index}`);
        if (it.prev_hash !== prev) problems.push(`iteration ${i}: prev_hash breaks the chain`);
        if (chainHash(it.prev_hash, iterationBody(it)) !== it.hash) problems.push(`iteration ${i}: hash does not match its content`);
        prev = it.hash;
      });
      if (grade.chain_head !== prev) problems.push('chain_head is not the hash of the last iteration');
      const held = grade.iterations.filter((it) => it.held).map((it) => Math.floor(it.achieved_mps));
      const expected = held.length > 0 ? Math.max(...held) : null;
      if (grade.mps !== expected) problems.push(`grade ${String(grade.mps)} is not the highest MPS that held (${String(expected)})`);
    } catch (err) {
      problems.push(`grade section is malformed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (signature && report.instance && signature.key_id !== report.instance.key_id) problems.push('signature.key_id is not the instance key id');
  // Base64 has spare bits in its last character: only the canonical encoding of 64 bytes is accepted.
  if (signature && typeof signature.value === 'string' && (Buffer.from(signature.value, 'base64').length !== 64 || Buffer.from(signature.value, 'base64').toString('base64') !== signature.value)) {
    problems.push('the signature is not the canonical base64 of 64 bytes');
  }
  if (report.instance && typeof report.instance.public_key === 'string' && Buffer.from(report.instance.public_key, 'base64').toString('base64') !== report.instance.public_key) {
    problems.push('instance.public_key is not canonical base64');
  }
  if (signature && typeof signature.value === 'string' && typeof publicKey === 'string' && publicKey !== '') {
    try {
      const { signature: _s, ...unsigned } = report as SignedReport;
      const ok = verifyBytes(null, Buffer.from(canonicalJson(unsigned), 'utf8'), publicKeyFromSpki(publicKey), Buffer.from(signature.value, 'base64'));
      if (!ok) problems.push('the signature does not match the report');
    } catch (err) {
      problems.push(`the signature cannot be checked: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { ok: problems.length === 0, problems, keyTrusted: Boolean(options.trustedPublicKey) };
}
