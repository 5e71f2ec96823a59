/**
 * env.json generation (pepeunit-backend.md §7.4, docs alg-env.md). Layers, lowest priority
 * first: (4) the target `env_example.json`, (3) the generated `PU_*` variables, (2) the stored
 * env (decrypted `cipher_env_dict`), (1) the user's JSON. Then keep only the allowed keys
 * (env_example keys except the reserved names, plus the generated keys) and, for output, set
 * `PU_COMMIT_VERSION` to the target commit.
 *
 * One deliberate difference: `PU_AUTH_TOKEN` is always the unit's current token. It is
 * deterministic (HS256 over `{"uuid", "type": "Unit"}` with PU_SECRET_KEY), so this only
 * differs from the reference when a stored/user value is stale or wrong — which would lock
 * the device out of the broker and the API.
 */
import { randomBytes } from 'node:crypto';
import { unitToken, type BackendConfig } from '@pepeunit/common';
import { CustomJSONDecodeError, GitRepoError } from '../errors.js';

export const RESERVED_ENV_NAMES = [
  'PU_DOMAIN',
  'PU_HTTP_TYPE',
  'PU_APP_PREFIX',
  'PU_API_ACTUAL_PREFIX',
  'PU_MQTT_HOST',
  'PU_MQTT_PORT',
  'PU_MQTT_PING_INTERVAL',
  'PU_MQTT_KEEPALIVE',
  'PU_AUTH_TOKEN',
  'PU_SECRET_KEY',
  'PU_ENCRYPT_KEY',
  'PU_STATE_SEND_INTERVAL',
  'PU_MIN_LOG_LEVEL',
  'PU_MAX_LOG_LENGTH',
  'PU_COMMIT_VERSION',
] as const;

const RESERVED = new Set<string>(RESERVED_ENV_NAMES);

export type EnvDict = Record<string, unknown>;

/** The generated variables (§7.5 table); PU_SECRET_KEY and PU_ENCRYPT_KEY are fresh on every call. */
export function generatedEnv(config: BackendConfig, unitUuid: string): EnvDict {
  return {
    // The reference clients build their REST base from it: host and, off 80/443, the port.
    PU_DOMAIN: config.publicHost,
    PU_HTTP_TYPE: config.links.httpType,
    PU_APP_PREFIX: config.appPrefix,
    PU_API_ACTUAL_PREFIX: config.apiV1Prefix,
    PU_MQTT_HOST: config.mqtt.host,
    PU_MQTT_PORT: config.mqtt.port,
    PU_MQTT_PING_INTERVAL: 20,
    PU_MQTT_KEEPALIVE: 60,
    PU_AUTH_TOKEN: unitToken(unitUuid, config.secretKey),
    PU_SECRET_KEY: randomBytes(32).toString('base64'),
    PU_ENCRYPT_KEY: randomBytes(32).toString('base64'),
    PU_STATE_SEND_INTERVAL: config.stateSendInterval,
    PU_MIN_LOG_LEVEL: 'Debug',
    PU_MAX_LOG_LENGTH: 64,
  };
}

export interface UnifiedEnvInput {
  envExample: EnvDict;
  generated: EnvDict;
  stored: EnvDict | null;
  user: EnvDict | null;
  /** Target commit; set as PU_COMMIT_VERSION when `includeCommitVersion`. */
  commit: string;
  includeCommitVersion: boolean;
}

/** The reference `generate_unified_env` with filtering always on. */
export function unifiedEnv(input: UnifiedEnvInput): EnvDict {
  const merged: EnvDict = { ...input.envExample };
  for (const layer of [input.generated, input.stored, input.user]) {
    if (!layer) continue;
    for (const [key, value] of Object.entries(layer)) merged[key] = value;
  }
  merged.PU_AUTH_TOKEN = input.generated.PU_AUTH_TOKEN;
  delete merged.PU_COMMIT_VERSION;
  const allowed = new Set<string>([...Object.keys(input.envExample).filter((key) => !RESERVED.has(key)), ...Object.keys(input.generated)]);
  const result: EnvDict = {};
  for (const [key, value] of Object.entries(merged)) if (allowed.has(key)) result[key] = value;
  if (input.includeCommitVersion) result.PU_COMMIT_VERSION = input.commit;
  return result;
}

/**
 * Every key of `env_example.json` must be present (reference `is_valid_env_file`), except
 * PU_COMMIT_VERSION, which is only added on output.
 */
export function assertEnvComplete(envExample: EnvDict, env: EnvDict): void {
  const missing = Object.keys(envExample).filter((key) => key !== 'PU_COMMIT_VERSION' && !(key in env));
  if (missing.length > 0) {
    throw new GitRepoError(`This env file has {${missing.map((key) => `'${key}'`).join(', ')}} unresolved variable`);
  }
}

/** Parses a JSON object (user input or decrypted storage); CustomJSONDecodeError otherwise. */
export function parseEnvObject(text: string, what: string): EnvDict {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CustomJSONDecodeError(`Data ${what} is invalid`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CustomJSONDecodeError(`Data ${what} is invalid: a JSON object is expected`);
  }
  return parsed as EnvDict;
}
