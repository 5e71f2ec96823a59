/**
 * One typed loader for every environment variable the platform reads.
 *
 * The `PU_*` variables of the reference backend and the `PU_DP_*` variables of the reference
 * DataPipe keep their names, meanings and defaults (docs/OPERATIONS.md lists them); variables of
 * our own use the same `PU_` prefix. A process loads only the group(s) it needs; every problem is
 * collected and reported at once so an operator fixes a bad environment in one pass.
 */
import { createHmac } from 'node:crypto';
import { isIP } from 'node:net';

export type VariableKind = 'string' | 'secret' | 'int' | 'number' | 'bool' | 'enum' | 'rate' | 'url';

export interface VariableSpec {
  readonly name: string;
  readonly kind: VariableKind;
  /** `undefined` means required. */
  readonly default?: string;
  readonly description: string;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Marks variables that are ours (not in the reference). */
  readonly ours?: boolean;
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on', 't', 'y']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off', 'f', 'n']);

function v(name: string, kind: VariableKind, def: string | undefined, description: string, extra: Partial<VariableSpec> = {}): VariableSpec {
  return { name, kind, default: def, description, ...extra };
}

/** Variables of the reference backend (pepeunit-backend.md §10) plus ours, grouped for the backend process. */
export const BACKEND_VARIABLES: readonly VariableSpec[] = [
  v('PU_FF_TELEGRAM_BOT_ENABLE', 'bool', 'True', 'Feature flag: Telegram bot, webhook route and verification links'),
  v('PU_FF_GRAFANA_INTEGRATION_ENABLE', 'bool', 'True', 'Feature flag: Grafana provisioning, dashboards API and cookies'),
  v('PU_FF_DATAPIPE_ENABLE', 'bool', 'True', 'Feature flag: DataPipe endpoints and config change notifications'),
  v('PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE', 'bool', 'True', 'Feature flag: default LastValue DataPipe on new /pepeunit nodes'),
  v('PU_FF_PROMETHEUS_ENABLE', 'bool', 'True', 'Feature flag: Prometheus metrics at <PU_APP_PREFIX>/metrics'),
  v('PU_LOG_FORMAT', 'enum', 'json', 'Log format', { values: ['json', 'plain'] }),
  v('PU_MIN_LOG_LEVEL', 'enum', 'INFO', 'Minimum log level', { values: ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] }),
  v('PU_APP_PREFIX', 'string', '/pepeunit', 'URL prefix of the application'),
  v('PU_API_V1_PREFIX', 'string', '/api/v1', 'URL prefix of REST v1 (also PU_API_ACTUAL_PREFIX in unit env)'),
  v('PU_WORKER_COUNT', 'int', '2', 'Reference: gunicorn workers. Here: sizes the Postgres pool (max(5, 2 x workers))', { min: 1, max: 256 }),
  v('PU_DOMAIN', 'string', undefined, 'Public domain or IP of the instance; MQTT topic root; Backend JWT claim'),
  v('PU_SECURE', 'bool', 'True', 'https links (and TLS for broker -> backend callbacks)'),
  v('PU_AUTH_TOKEN_EXPIRATION', 'int', '2678400', 'User/Grafana JWT lifetime in seconds', { min: 60 }),
  v('PU_SAVE_REPO_PATH', 'string', 'repo_cache', 'Directory of the git clones'),
  v('PU_SQLALCHEMY_DATABASE_URL', 'url', undefined, 'PostgreSQL URL (postgresql://, postgresql+psycopg2:// and similar accepted)'),
  v('PU_CLICKHOUSE_DATABASE_URL', 'url', undefined, 'ClickHouse URL: http(s)://user:pass@host:8123/db, or the reference clickhouse+native://user:pass@host:9000/db (mapped to HTTP 8123)'),
  v('PU_SECRET_KEY', 'secret', undefined, 'JWT HMAC key, used as the literal UTF-8 string'),
  v('PU_ENCRYPT_KEY', 'secret', undefined, 'base64 of a 32-byte AES-256-GCM key for data at rest'),
  v('PU_STATIC_SALT', 'secret', undefined, 'Password pepper (changing it locks out existing accounts)'),
  v('PU_MIN_INTERVAL_SYNC_REPOSITORY', 'int', '10', 'Seconds: minimum interval between repository sync requests', { min: 0 }),
  v('PU_STATE_SEND_INTERVAL', 'int', '60', 'Unit state interval in seconds; state is saved at most once per (interval - 1) s', { min: 2, max: 86400 }),
  v('PU_MAX_EXTERNAL_REPO_SIZE', 'int', '50', 'MB: size limit of an external repository', { min: 1 }),
  v('PU_MAX_CIPHER_LENGTH', 'int', '1000000', 'Maximum plaintext length to encrypt', { min: 1 }),
  v('PU_MIN_TOPIC_UPDATE_TIME', 'int', '30', 'Documented by the reference, unused', { min: 0 }),
  v('PU_UNIT_LOG_EXPIRATION', 'int', '86400', 'Seconds until a unit log row expires', { min: 1 }),
  v('PU_MAX_PAGINATION_SIZE', 'int', '500', 'Maximum page size (limit)', { min: 1 }),
  v('PU_DATAPIPE_READ_CACHE_MS', 'int', '1000', 'DataPipe data pages (get_data_pipe_data) are kept this many ms: a burst of the same page reads ClickHouse once. Changes made through this backend (data deleted or replaced, config changed) drop them at once; 0 = no cache (identical reads in flight are still shared)', { ours: true, min: 0, max: 60000 }),
  v('PU_AVAILABLE_TOPIC_SYMBOLS', 'string', 'A-Za-z0-9/_-', 'Allowed characters of schema topic names (character-class body)'),
  v('PU_AVAILABLE_NAME_ENTITY_SYMBOLS', 'string', 'A-Za-z0-9_.-', 'Allowed characters of entity names (character-class body)'),
  v('PU_AVAILABLE_PASSWORD_SYMBOLS', 'string', '', 'Allowed password characters (empty: letters, digits and ASCII punctuation)'),
  v('PU_TELEGRAM_BOT_MODE', 'enum', 'webhook', 'Telegram bot mode', { values: ['webhook', 'pooling'] }),
  v('PU_TELEGRAM_DEL_OLD_WEBHOOK', 'bool', 'True', 'Delete the old webhook before setting one'),
  v('PU_TELEGRAM_TOKEN', 'secret', '', 'Telegram bot token (required when the bot is enabled)'),
  v('PU_TELEGRAM_BOT_LINK', 'string', '', 'https://t.me/<bot> link used in verification links'),
  v('PU_TELEGRAM_ITEMS_PER_PAGE', 'int', '7', 'Bot page size', { min: 1, max: 50 }),
  v('PU_TELEGRAM_HEADER_ENTITY_LENGTH', 'int', '15', 'Bot: entity name truncation', { min: 1 }),
  v('PU_TELEGRAM_GIT_HASH_LENGTH', 'int', '8', 'Bot: commit hash truncation', { min: 1 }),
  v('PU_TELEGRAM_PROXY_URL', 'string', '', 'Optional proxy for the Telegram API'),
  v('PU_TELEGRAM_ALERT_INTERVAL', 'int', '60', 'Seconds between two alert messages to one Telegram chat; alerts within the interval are merged into the next message ("+N more since HH:MM")', { ours: true, min: 1, max: 86400 }),
  v('PU_TELEGRAM_GLOBAL_RATE', 'int', '25', 'Telegram messages per second one backend replica sends at most, all chats together (Telegram allows about 30/s)', { ours: true, min: 1, max: 1000 }),
  v('PU_TELEGRAM_API_ROOT', 'string', 'https://api.telegram.org', 'Bot API root URL (a local Bot API server, or the stand-in in tests); no trailing slash', { ours: true }),
  v('PU_TELEGRAM_WEBHOOK_SECRET', 'secret', '', 'secret_token of the bot webhook (X-Telegram-Bot-Api-Secret-Token); empty: derived from PU_SECRET_KEY', { ours: true }),
  v('PU_TELEGRAM_VERIFICATION_CODE_TTL', 'int', '600', 'Seconds a Telegram verification code (deep link) stays valid', { ours: true, min: 10, max: 86400 }),
  v('PU_ALERT_WEBHOOK_SECRET', 'secret', '', 'Shared secret EMQX sends as "authorization: Bearer <secret>" on the alert webhook (the connector http:pu-backend); empty: derived from PU_SECRET_KEY', { ours: true }),
  v('PU_ALERT_WEBHOOK_ACK', 'enum', 'queued', 'When the alert webhook answers EMQX: queued (the alert is in the bounded intake buffer, written to Postgres within milliseconds and flushed at shutdown; a crash of the process loses what is buffered) or stored (committed to Postgres first; slower: a commit per request unless the broker pipelines)', { ours: true, values: ['queued', 'stored'] }),
  v('PU_ALERT_WEBHOOK_CONNECTIONS', 'int', '32', 'pool_size of the EMQX connector http:pu-backend: connections from each EMQX node to the alert webhook (a Node.js server answers the requests pipelined on one connection one after another, so this bounds the alerts in progress)', { ours: true, min: 1, max: 1024 }),
  v('PU_ALERT_QUEUE_MAX', 'int', '20000', 'Alerts accepted by the webhook and not yet written to Postgres at most; beyond it the webhook answers 503 so EMQX retries', { ours: true, min: 100, max: 1000000 }),
  v('PU_ALERT_HISTORY_DAYS', 'int', '30', 'Days alert history (delivered, muted, failed alerts and messages) is kept', { ours: true, min: 1, max: 3650 }),
  v('PU_ALERT_DISCONNECT_STORM', 'int', '50', 'Abnormal disconnects per minute (instance-wide) that raise one admin alert; authorization denials alert the admin at most once per client per minute', { ours: true, min: 1 }),
  v('PU_PROMETHEUS_MULTIPROC_DIR', 'string', './prometheus_metrics', 'Reference only (single process here); accepted and ignored'),
  v('PU_REDIS_URL', 'string', '', 'Redis URL; when set, config changes are also sent to the stream backend_data_pipe_nodes (reference default redis://redis:6379/0; empty disables Redis)'),
  v('PU_MQTT_HOST', 'string', undefined, 'Broker host (also given to units)'),
  v('PU_MQTT_SECURE', 'bool', 'True', 'https (no port) for the EMQX management API'),
  v('PU_MQTT_PORT', 'int', '1883', 'MQTT port (also given to units)', { min: 1, max: 65535 }),
  v('PU_MQTT_API_PORT', 'int', '18083', 'EMQX management API port when not secure', { min: 1, max: 65535 }),
  v('PU_MQTT_KEEPALIVE', 'int', '60', 'Backend MQTT keepalive in seconds', { min: 1 }),
  v('PU_MQTT_USERNAME', 'string', '', 'EMQX dashboard user (reference login flow; API keys are preferred)'),
  v('PU_MQTT_PASSWORD', 'secret', '', 'EMQX dashboard password'),
  v('PU_MQTT_REDIS_AUTH_URL', 'string', '', 'Reference: Redis seen by EMQX for the backend ACL; unused (the backend is authorised through the HTTP source)'),
  v('PU_MQTT_MAX_CLIENTS', 'int', '10000', 'Listener max connections', { min: 1 }),
  v('PU_MQTT_MAX_CLIENT_CONNECTION_RATE', 'rate', '20/s', 'Listener max connection rate'),
  v('PU_MQTT_MAX_CLIENT_ID_LEN', 'int', '512', 'Maximum client id length', { min: 23, max: 65535 }),
  v('PU_MQTT_CLIENT_MAX_MESSAGES_RATE', 'rate', '30/s', 'Per-client message rate'),
  v('PU_MQTT_CLIENT_MAX_BYTES_RATE', 'rate', '1MB/s', 'Per-client byte rate'),
  v('PU_MQTT_MAX_PAYLOAD_SIZE', 'int', '256', 'KB: maximum MQTT packet / payload size', { min: 1, max: 262144 }),
  v('PU_MQTT_MAX_QOS', 'int', '2', 'Maximum QoS', { min: 0, max: 2 }),
  v('PU_MQTT_MAX_TOPIC_LEVELS', 'int', '5', 'Maximum topic depth', { min: 1, max: 65535 }),
  v('PU_MQTT_MAX_LEN_MESSAGE_QUEUE', 'int', '128', 'Session message queue length', { min: 0 }),
  v('PU_MQTT_MAX_TOPIC_ALIAS', 'int', '128', 'Maximum topic aliases', { min: 0, max: 65535 }),
  v('PU_GITHUB_TOKEN_NAME', 'string', '', 'Optional instance GitHub token user for public API calls'),
  v('PU_GITHUB_TOKEN_PAT', 'secret', '', 'Optional instance GitHub PAT'),
  v('PU_GRAFANA_ADMIN_USER', 'string', '', 'Grafana admin user (basic auth)'),
  v('PU_GRAFANA_ADMIN_PASSWORD', 'secret', '', 'Grafana admin password'),
  v('PU_GRAFANA_LIMIT_UNIT_NODE_PER_ONE_PANEL', 'int', '10', 'Maximum unit nodes per panel', { min: 1 }),
  // ---- ours ----
  v('PU_BACKEND_HOST', 'string', '0.0.0.0', 'Address the backend HTTP server binds to', { ours: true }),
  v('PU_BACKEND_PORT', 'int', '5000', 'Port of the backend HTTP server', { ours: true, min: 0, max: 65535 }),
  v('PU_PUBLIC_PORT', 'int', '0', 'Port of the public address when it is not the default of PU_SECURE (80/443): links and the PU_DOMAIN given to units in env.json become <PU_DOMAIN>:<port> (the reference clients build their REST base as PU_HTTP_TYPE://PU_DOMAIN + prefixes). MQTT topics and JWT claims keep PU_DOMAIN alone. 0: no port (behind a reverse proxy on 80/443)', { ours: true, min: 0, max: 65535 }),
  v('PU_MQTT_CALLBACK_SECRET', 'secret', '', 'Shared secret the broker sends in the x-pepeunit-broker-secret header of its authn/authz callbacks; callbacks without it are refused (401). Empty: derived from PU_SECRET_KEY (the EMQX controller configures EMQX with it). "none" disables the check (not recommended: anyone who reaches the backend can then query decisions)', { ours: true }),
  v('PU_MQTT_CALLBACK_ALLOWED_NETWORKS', 'string', '', 'Comma-separated addresses or CIDR networks the broker callbacks may come from (empty: any address; the secret still applies)', { ours: true }),
  v('PU_LOGIN_ATTEMPTS_PER_ADDRESS', 'int', '30', 'Login attempts (POST /users/auth) one client address may make per PU_LOGIN_WINDOW_SECONDS; more answer 429 (0 = unlimited)', { ours: true, min: 0 }),
  v('PU_LOGIN_FAILURES_PER_LOGIN', 'int', '10', 'Failed logins one account may see per PU_LOGIN_WINDOW_SECONDS, from any address; more answer 429 until the window passes (0 = unlimited)', { ours: true, min: 0 }),
  v('PU_LOGIN_WINDOW_SECONDS', 'int', '900', 'Window of the two login limits, in seconds', { ours: true, min: 1 }),
  v('PU_ACCESS_LOG', 'enum', 'errors', 'Request log lines: errors (failed and slow requests only), all (one line per request), off (slow requests only)', { ours: true, values: ['errors', 'all', 'off'] }),
  v('PU_SLOW_REQUEST_MS', 'int', '1000', 'Requests slower than this (ms) are logged at warn whatever PU_ACCESS_LOG says', { ours: true, min: 1 }),
  v('PU_BACKEND_PUBLIC_URL', 'string', '', 'Base URL the broker uses to call the backend (authn/authz callbacks); default http://127.0.0.1:<PU_BACKEND_PORT>', { ours: true }),
  v('PU_EMQX_API_URL', 'string', '', 'EMQX management API base URL; default https://<PU_MQTT_HOST> or http://<PU_MQTT_HOST>:<PU_MQTT_API_PORT>', { ours: true }),
  v('PU_EMQX_API_KEY', 'string', '', 'EMQX API key (bootstrap file key) used by the controller', { ours: true }),
  v('PU_EMQX_API_SECRET', 'secret', '', 'EMQX API secret', { ours: true }),
  v('PU_CLICKHOUSE_DATABASE', 'string', '', 'ClickHouse database (overrides the one in PU_CLICKHOUSE_DATABASE_URL; default "default")', { ours: true }),
  v('PU_CLICKHOUSE_CLUSTER', 'string', '', 'ClickHouse cluster name (remote_servers) the migrations run ON CLUSTER with replicated engines; empty: one server (docs/INSTALL.md)', { ours: true }),
  v('PU_GIT_ALLOWED_PROTOCOLS', 'string', 'https,http', 'URL schemes the registry may clone from (comma-separated; tests add file)', { ours: true }),
  v('PU_GIT_PLATFORM_API_BASE_URL', 'string', '', 'Override of the GitHub/GitLab API base URL (empty: derived from the repository URL as the reference does; tests point it at a local server)', { ours: true }),
  v('PU_REGISTRY_ALLOWED_PRIVATE_HOSTS', 'string', '', 'Comma-separated repository hosts (name or name:port) that may resolve to loopback, private or link-local addresses (an on-premises git server). Every other host must resolve to public addresses only (admins can also allow domains over REST: /repository_registry/domain_rules)', { ours: true }),
  v('PU_REGISTRY_SYNC_INTERVAL_HOURS', 'int', '1', 'Hours between periodic forced syncs of every registry entry (0 disables the periodic sync)', { ours: true, min: 0, max: 8760 }),
  v('PU_UNITS_AUTO_UPDATE_INTERVAL_MINUTES', 'int', '60', 'Minutes between the safety-net runs of automatic unit updates (units with is_auto_update_from_repo_unit get Update when their target moved; syncs and repo changes trigger it at once). 0 disables the periodic run', { ours: true, min: 0, max: 525600 }),
  v('PU_BACKEND_SHARE_GROUP', 'string', 'pepeunit-backend', 'Shared-subscription group of the system-topic consumer, so backend replicas split the load (empty: plain subscription)', { ours: true }),
  // -- load, node state and error tracker (issue 13) --
  v('PU_LOAD_SAMPLE_INTERVAL', 'int', '10', 'Seconds between two bulk reads of the broker\'s counting-rule counters (per-unit load, cut-off checks)', { ours: true, min: 1, max: 3600 }),
  v('PU_LOAD_UNIT_MPS_LIMIT', 'number', '50', 'Instance default MPS limit of a unit (messages per second on all of its topics); admins override it per user, billing may lower it; 0 = no limit', { ours: true }),
  v('PU_LOAD_CUTOFF_ENABLE', 'bool', 'True', 'Cut off units that stay over their MPS limit (ban + kick through the broker API); false = measure only', { ours: true }),
  v('PU_LOAD_EXCESS_WINDOW', 'int', '60', 'Seconds a unit must stay over limit x PU_LOAD_EXCESS_FACTOR before it is cut off (0 = at the first sample over)', { ours: true, min: 0, max: 86400 }),
  v('PU_LOAD_EXCESS_FACTOR', 'number', '1.2', 'A sample counts as excess when the unit\'s MPS is above limit x this factor', { ours: true }),
  v('PU_LOAD_CUTOFF_LADDER', 'string', '60,600,3600,86400', 'Ban durations in seconds of the escalation steps (comma-separated, increasing); a repeat goes one step up, the last step repeats', { ours: true }),
  v('PU_LOAD_CUTOFF_RESET', 'int', '86400', 'Seconds after a release without a new cut-off after which the ladder starts again at its first step', { ours: true, min: 0 }),
  v('PU_NODE_STATE_INTERVAL', 'int', '30', 'Seconds between node-state samples of this process (ClickHouse node_state, Prometheus gauges); 0 = off', { ours: true, min: 0, max: 3600 }),
  v('PU_ERROR_ALERT_INTERVAL', 'int', '600', 'Minimum seconds between two admin alerts of the same crash fingerprint (the next one says how many happened since)', { ours: true, min: 0 }),
  // -- billing (issue 14) --
  v('PU_BILLING_CYCLE_INTERVAL_SECONDS', 'int', '300', 'Seconds between billing cycles (statements of the last closed period, warnings, free-tier limits and their lifting); one replica runs each cycle (advisory lock). 0 disables the cycle', { ours: true, min: 0, max: 86400 }),
  v('PU_BILLING_CRYPTO_PAY_TOKEN', 'secret', '', 'Crypto Pay API app token (@CryptoBot -> Crypto Pay -> My Apps); set it to offer crypto payments. Also the webhook key: SHA-256(token) verifies crypto-pay-api-signature', { ours: true }),
  v('PU_BILLING_CRYPTO_PAY_API_URL', 'string', 'https://pay.crypt.bot/api', 'Crypto Pay API base (testnet: https://testnet-pay.crypt.bot/api; tests: a local stand-in); no trailing slash', { ours: true }),
  v('PU_BILLING_CRYPTO_PAY_ACCEPTED_ASSETS', 'string', 'USDT,TON,BTC', 'Comma-separated assets a fiat-priced Crypto Pay invoice accepts (crypto-priced plans are invoiced in their own asset)', { ours: true }),
  v('PU_BILLING_STARS_ENABLE', 'bool', 'False', 'Offer payments in Telegram Stars (XTR) through the bot (needs the Telegram bot: PU_TELEGRAM_TOKEN)', { ours: true }),
  v('PU_SHUTDOWN_TIMEOUT', 'int', '15', 'Seconds a graceful shutdown may take before the process exits anyway', { ours: true, min: 1, max: 600 }),
];

/** Variables of the reference Go DataPipe (pepeunit-datapipe.md §6.1) plus ours for the ingest. */
export const INGEST_VARIABLES: readonly VariableSpec[] = [
  v('PU_DP_DOMAIN', 'string', undefined, 'Instance domain (must equal the backend PU_DOMAIN)'),
  v('PU_DP_SECRET_KEY', 'secret', undefined, 'JWT HMAC key (must equal the backend PU_SECRET_KEY)'),
  v('PU_DP_SQLALCHEMY_DATABASE_URL', 'url', undefined, 'PostgreSQL URL'),
  v('PU_DP_CLICKHOUSE_DATABASE_URL', 'url', undefined, 'ClickHouse URL (http(s):// or clickhouse+native://, see PU_CLICKHOUSE_DATABASE_URL)'),
  v('PU_DP_REDIS_URL', 'string', '', 'Redis URL of the backend_data_pipe_nodes stream (reference default redis://redis:6379/0; empty: use Postgres NOTIFY only)'),
  v('PU_DP_MQTT_HOST', 'string', undefined, 'Broker host'),
  v('PU_DP_MQTT_PORT', 'int', '1883', 'Broker port', { min: 1, max: 65535 }),
  v('PU_DP_MQTT_KEEPALIVE', 'int', '60', 'MQTT keepalive in seconds', { min: 1 }),
  v('PU_DP_CONFIG_SYNC_INTERVAL', 'int', '60', 'Seconds between full config reloads from Postgres', { min: 1 }),
  v('PU_DP_NRECORDS_CLEANUP_INTERVAL', 'int', '60', 'Seconds between n_last_entry trims', { min: 1 }),
  v('PU_DP_BUFFER_FLUSH_INTERVAL', 'int', '5', 'Seconds between buffer flushes', { min: 1 }),
  v('PU_DP_BUFFER_MAX_SIZE', 'int', '1000', 'Buffered entries that force an immediate flush', { min: 1 }),
  // ---- ours ----
  v('PU_DP_INTAKE_MODE', 'enum', 'go-compatible', 'rules: consume what the broker rules forward (shared subscription); go-compatible: subscribe <domain>/+/pepeunit like the Go service', { ours: true, values: ['rules', 'go-compatible'] }),
  v('PU_DP_SHARE_GROUP', 'string', '', 'Optional $share group for the go-compatible subscription', { ours: true }),
  v('PU_DP_CLICKHOUSE_DATABASE', 'string', '', 'ClickHouse database override', { ours: true }),
  v('PU_DP_RETRY_BUFFER_MAX_ROWS', 'int', '1000000', 'Rows kept for retry while a database is down; beyond that rows are dropped and counted', { ours: true, min: 1 }),
  v('PU_DP_LOG_LEVEL', 'enum', 'info', 'Ingest log level', { ours: true, values: ['debug', 'info', 'warn', 'error'] }),
  v('PU_DP_METRICS_PORT', 'int', '0', 'Port of the ingest Prometheus/health endpoint (0: a free port)', { ours: true, min: 0, max: 65535 }),
  v('PU_NODE_STATE_INTERVAL', 'int', '30', 'Seconds between node-state samples of the ingest (ClickHouse node_state); 0 = off', { ours: true, min: 0, max: 3600 }),
  v('PU_MQTT_MAX_PAYLOAD_SIZE', 'int', '256', 'KB: payloads above this are dropped and counted', { min: 1, max: 262144 }),
];

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], context: string) {
    super(`Invalid ${context} configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  - ${p}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Parsed = string | number | boolean;

function describeExpected(spec: VariableSpec): string {
  switch (spec.kind) {
    case 'int':
      return `an integer${spec.min !== undefined ? ` >= ${spec.min}` : ''}${spec.max !== undefined ? ` and <= ${spec.max}` : ''}`;
    case 'number':
      return 'a number';
    case 'bool':
      return 'a boolean (True/False, true/false, 1/0, yes/no, on/off)';
    case 'enum':
      return `one of ${(spec.values ?? []).join(', ')}`;
    case 'rate':
      return 'a rate such as 20/s, 1MB/s, 100/10s or infinity';
    case 'url':
      return 'a URL such as scheme://user:password@host:port/database';
    default:
      return 'a non-empty string';
  }
}

const RATE = /^(infinity|\d+(\.\d+)?\s*(KB|MB|GB|kb|mb|gb)?\/(\d+)?(ms|s|m|h|d))$/;

function parseOne(spec: VariableSpec, raw: string): { ok: true; value: Parsed } | { ok: false } {
  const text = raw.trim();
  switch (spec.kind) {
    case 'int': {
      if (!/^[+-]?\d+$/.test(text)) return { ok: false };
      const n = Number(text);
      if (!Number.isSafeInteger(n)) return { ok: false };
      if (spec.min !== undefined && n < spec.min) return { ok: false };
      if (spec.max !== undefined && n > spec.max) return { ok: false };
      return { ok: true, value: n };
    }
    case 'number': {
      const n = Number(text);
      return text !== '' && Number.isFinite(n) ? { ok: true, value: n } : { ok: false };
    }
    case 'bool': {
      const low = text.toLowerCase();
      if (TRUE_WORDS.has(low)) return { ok: true, value: true };
      if (FALSE_WORDS.has(low)) return { ok: true, value: false };
      return { ok: false };
    }
    case 'enum': {
      const match = (spec.values ?? []).find((x) => x.toLowerCase() === text.toLowerCase());
      return match !== undefined ? { ok: true, value: match } : { ok: false };
    }
    case 'rate':
      return RATE.test(text) ? { ok: true, value: text } : { ok: false };
    case 'url': {
      try {
        const u = new URL(text);
        return u.protocol && u.host ? { ok: true, value: text } : { ok: false };
      } catch {
        return { ok: false };
      }
    }
    default:
      return { ok: true, value: raw };
  }
}

/**
 * Parses `env` against `specs`. Returns a name -> value map; throws one ConfigError naming every
 * missing or malformed variable and what is expected. Secret values never appear in messages.
 */
export function parseVariables(specs: readonly VariableSpec[], env: NodeJS.ProcessEnv, context: string): Record<string, Parsed> {
  const out: Record<string, Parsed> = {};
  const problems: string[] = [];
  for (const spec of specs) {
    const raw = env[spec.name];
    if (raw === undefined || (raw.trim() === '' && spec.default === undefined)) {
      if (spec.default === undefined) {
        problems.push(`${spec.name} is not set; expected ${describeExpected(spec)} (${spec.description})`);
        continue;
      }
      const parsedDefault = spec.default === '' ? { ok: true as const, value: '' } : parseOne(spec, spec.default);
      if (!parsedDefault.ok) throw new Error(`internal: bad default for ${spec.name}`);
      out[spec.name] = parsedDefault.value;
      continue;
    }
    if (raw.trim() === '' && spec.kind !== 'string' && spec.kind !== 'secret') {
      // An explicitly empty optional variable means "use the default".
      const parsedDefault = spec.default === '' ? { ok: true as const, value: '' } : parseOne(spec, spec.default ?? '');
      if (parsedDefault.ok) {
        out[spec.name] = parsedDefault.value;
        continue;
      }
    }
    const parsed = parseOne(spec, raw);
    if (!parsed.ok) {
      // A URL's user:password part is a secret too (e.g. the ClickHouse password).
      const visible = spec.kind === 'url' ? raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, '$1***@') : raw;
      const shown = spec.kind === 'secret' ? '<hidden>' : JSON.stringify(visible.length > 80 ? visible.slice(0, 80) + '…' : visible);
      problems.push(`${spec.name}=${shown} is invalid; expected ${describeExpected(spec)}`);
      continue;
    }
    out[spec.name] = parsed.value;
  }
  if (problems.length > 0) throw new ConfigError(problems, context);
  return out;
}

export interface BackendConfig {
  readonly domain: string;
  /** Host part of public links and of the PU_DOMAIN units get: `PU_DOMAIN[:PU_PUBLIC_PORT]`. */
  readonly publicHost: string;
  readonly secure: boolean;
  readonly appPrefix: string;
  readonly apiV1Prefix: string;
  readonly secretKey: string;
  readonly encryptKey: string;
  readonly staticSalt: string;
  readonly postgresUrl: string;
  readonly clickhouseUrl: string;
  readonly clickhouseDatabase: string;
  readonly redisUrl: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  readonly logFormat: 'json' | 'plain';
  readonly host: string;
  readonly port: number;
  readonly authTokenExpiration: number;
  readonly stateSendInterval: number;
  readonly unitLogExpiration: number;
  readonly maxPaginationSize: number;
  /** PU_DATAPIPE_READ_CACHE_MS: how long a DataPipe data page is reused (0 = never). */
  readonly datapipeReadCacheMs: number;
  readonly maxCipherLength: number;
  readonly saveRepoPath: string;
  readonly maxExternalRepoSizeMb: number;
  readonly minIntervalSyncRepository: number;
  readonly workerCount: number;
  readonly shutdownTimeoutSeconds: number;
  readonly gitAllowedProtocols: readonly string[];
  readonly registrySyncIntervalHours: number;
  /** Character-class bodies of allowed characters (PU_AVAILABLE_*_SYMBOLS); `password` empty = letters, digits, ASCII punctuation. */
  readonly symbols: { readonly nameEntity: string; readonly password: string; readonly topic: string };
  /** PU_BACKEND_PUBLIC_URL as configured ('' = not set: the broker calls back on loopback). */
  readonly backendPublicUrl: string;
  /** PU_BACKEND_SHARE_GROUP ('' = none). */
  readonly backendShareGroup: string;
  /** Git platform API for the registry: base URL override ('' = the platform's own) and the GitHub token used for API calls. */
  readonly gitPlatform: { readonly apiBaseUrl: string; readonly githubTokenName: string; readonly githubTokenPat: string };
  /** PU_CLICKHOUSE_CLUSTER ('' = a single server). */
  readonly clickhouseCluster: string;
  /** Repository hosts that may resolve to private addresses (configured), plus the platform API override's host. */
  readonly registryTrustedHosts: readonly string[];
  /** HTTP server behaviour: access log lines and the slow-request threshold. */
  readonly http: { readonly accessLog: 'errors' | 'all' | 'off'; readonly slowRequestMs: number };
  /** Login throttling (per client address and per account). */
  readonly loginLimits: { readonly attemptsPerAddress: number; readonly failuresPerLogin: number; readonly windowSeconds: number };
  /** Broker callbacks: the shared secret header (null = check disabled) and allowed networks. */
  readonly brokerCallbacks: { readonly secret: string | null; readonly allowedNetworks: readonly string[] };
  readonly unitsAutoUpdateIntervalMinutes: number;
  /** Telegram bot and alert delivery (PU_TELEGRAM_*). */
  readonly telegram: {
    readonly mode: 'webhook' | 'pooling';
    readonly delOldWebhook: boolean;
    readonly token: string;
    readonly botLink: string;
    readonly itemsPerPage: number;
    readonly headerEntityLength: number;
    readonly gitHashLength: number;
    readonly proxyUrl: string;
    readonly apiRoot: string;
    readonly webhookSecret: string;
    readonly verificationCodeTtl: number;
    readonly alertIntervalSeconds: number;
    readonly globalRate: number;
  };
  /** Alerts forwarded by EMQX rules and raised by the backend (PU_ALERT_*). */
  readonly alerts: {
    readonly webhookSecret: string;
    readonly webhookAck: 'queued' | 'stored';
    readonly webhookConnections: number;
    readonly queueMax: number;
    readonly historyDays: number;
    readonly disconnectStorm: number;
  };
  /** Load counting, limits and cut-off (issue 13). */
  readonly load: {
    readonly sampleIntervalSeconds: number;
    /** Instance default MPS limit of a unit; 0 = none. */
    readonly unitMpsLimit: number;
    readonly cutoffEnabled: boolean;
    readonly excessWindowSeconds: number;
    readonly excessFactor: number;
    /** Ban durations (seconds) of the escalation steps. */
    readonly cutoffLadderSeconds: readonly number[];
    readonly cutoffResetSeconds: number;
    readonly nodeStateIntervalSeconds: number;
    readonly errorAlertIntervalSeconds: number;
  };
  /** Billing (issue 14): cycle interval and payment providers. */
  readonly billing: {
    readonly cycleIntervalSeconds: number;
    readonly cryptoPay: { readonly token: string; readonly apiUrl: string; readonly acceptedAssets: readonly string[] };
    readonly starsEnabled: boolean;
  };
  readonly featureFlags: {
    readonly telegramBot: boolean;
    readonly grafana: boolean;
    readonly datapipe: boolean;
    readonly datapipeDefaultLastValue: boolean;
    readonly prometheus: boolean;
  };
  readonly mqtt: {
    readonly host: string;
    readonly port: number;
    readonly secure: boolean;
    readonly apiPort: number;
    readonly keepalive: number;
    readonly maxPayloadSizeKb: number;
    readonly maxClients: number;
    readonly maxClientConnectionRate: string;
    readonly maxClientIdLen: number;
    readonly clientMaxMessagesRate: string;
    readonly clientMaxBytesRate: string;
    readonly maxQos: number;
    readonly maxTopicLevels: number;
    readonly maxLenMessageQueue: number;
    readonly maxTopicAlias: number;
  };
  readonly emqx: {
    readonly apiUrl: string;
    readonly apiKey: string;
    readonly apiSecret: string;
    readonly username: string;
    readonly password: string;
  };
  /** Computed links as in the reference (`pu_link`, `pu_link_prefix`, `pu_link_prefix_and_v1`). */
  readonly links: {
    readonly httpType: 'https' | 'http';
    readonly link: string;
    readonly linkPrefix: string;
    readonly linkPrefixAndV1: string;
    /** Base URL the broker uses for callbacks into this backend, with prefix and /api/v1. */
    readonly callbackBase: string;
  };
}

const LOG_LEVELS: Record<string, BackendConfig['logLevel']> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARNING: 'warn',
  ERROR: 'error',
  CRITICAL: 'fatal',
};

function trimSlash(s: string): string {
  return s.endsWith('/') ? s.slice(0, -1) : s;
}

/** A JWT key shorter than this, or with fewer different characters, is refused at start. */
export const MIN_SECRET_KEY_LENGTH = 32;
const MIN_DISTINCT_SECRET_CHARS = 10;
const MIN_DISTINCT_KEY_BYTES = 16;
const MIN_SALT_LENGTH = 8;

/** Problems of a JWT signing key (HS256 keys are the raw UTF-8 text, so length is strength). */
export function weakSecretProblems(name: string, value: string): string[] {
  if (value.length < MIN_SECRET_KEY_LENGTH) {
    return [`${name} is too weak: ${value.length} characters, at least ${MIN_SECRET_KEY_LENGTH} required (e.g. \`openssl rand -base64 32\`)`];
  }
  if (new Set(value).size < MIN_DISTINCT_SECRET_CHARS) {
    return [`${name} is too weak: fewer than ${MIN_DISTINCT_SECRET_CHARS} different characters (e.g. \`openssl rand -base64 32\`)`];
  }
  return [];
}

/** Configured trusted repository hosts; the host of a platform API override is trusted too (the operator chose it). */
function trustedRepositoryHosts(list: string, apiBaseUrl: string): string[] {
  const hosts = list.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
  if (apiBaseUrl.trim()) {
    try {
      const url = new URL(apiBaseUrl.trim());
      hosts.push(url.hostname.toLowerCase(), url.host.toLowerCase());
    } catch {
      // validated elsewhere
    }
  }
  return hosts;
}

/** Name of the header carrying the broker callback secret. */
export const BROKER_CALLBACK_SECRET_HEADER = 'x-pepeunit-broker-secret';

/** The configured secret, or one derived from PU_SECRET_KEY (stable, so every replica agrees); null when disabled. */
export function brokerCallbackSecret(configured: string, secretKey: string): string | null {
  if (configured.toLowerCase() === 'none') return null;
  if (configured) return configured;
  return createHmac('sha256', secretKey).update('pepeunit broker callbacks').digest('base64url');
}

/** PU_LOAD_CUTOFF_LADDER: increasing positive seconds, comma-separated. */
export function parseLadder(text: string): number[] {
  return text.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
}

function loadProblems(r: Readonly<Record<string, Parsed>>): string[] {
  const problems: string[] = [];
  const ladder = parseLadder(String(r.PU_LOAD_CUTOFF_LADDER));
  if (ladder.length === 0 || ladder.length > 20 || ladder.some((x, i) => !Number.isSafeInteger(x) || x < 1 || (i > 0 && x < (ladder[i - 1] as number)))) {
    problems.push(`PU_LOAD_CUTOFF_LADDER=${JSON.stringify(String(r.PU_LOAD_CUTOFF_LADDER))} is invalid; expected 1 to 20 increasing whole seconds such as 60,600,3600,86400`);
  }
  if (Number(r.PU_LOAD_UNIT_MPS_LIMIT) < 0) problems.push('PU_LOAD_UNIT_MPS_LIMIT is invalid; expected a number >= 0 (0 = no limit)');
  if (!(Number(r.PU_LOAD_EXCESS_FACTOR) >= 1 && Number(r.PU_LOAD_EXCESS_FACTOR) <= 100)) problems.push('PU_LOAD_EXCESS_FACTOR is invalid; expected a number from 1 to 100');
  return problems;
}

export function loadBackendConfig(env: NodeJS.ProcessEnv = process.env): BackendConfig {
  const r = parseVariables(BACKEND_VARIABLES, env, 'backend');
  const problems: string[] = [];
  const encryptKey = String(r.PU_ENCRYPT_KEY);
  const encryptBytes = Buffer.from(encryptKey, 'base64');
  if (encryptBytes.length !== 32) {
    problems.push('PU_ENCRYPT_KEY is invalid; expected base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)');
  } else if (new Set(encryptBytes).size < MIN_DISTINCT_KEY_BYTES) {
    problems.push(`PU_ENCRYPT_KEY is too weak: its 32 bytes hold fewer than ${MIN_DISTINCT_KEY_BYTES} different values (all-zero or repeated bytes); generate one with \`openssl rand -base64 32\``);
  }
  problems.push(...weakSecretProblems('PU_SECRET_KEY', String(r.PU_SECRET_KEY)));
  if (String(r.PU_TELEGRAM_WEBHOOK_SECRET) && !/^[A-Za-z0-9_-]{1,256}$/.test(String(r.PU_TELEGRAM_WEBHOOK_SECRET))) {
    problems.push('PU_TELEGRAM_WEBHOOK_SECRET is invalid; expected 1-256 characters of A-Z a-z 0-9 _ - (Telegram secret_token)');
  }
  if (String(r.PU_ALERT_WEBHOOK_SECRET) && !/^[\x21-\x7e]{16,}$/.test(String(r.PU_ALERT_WEBHOOK_SECRET))) {
    problems.push('PU_ALERT_WEBHOOK_SECRET is invalid; expected at least 16 printable ASCII characters without spaces');
  }
  if (!/^https?:\/\/[^/]/.test(String(r.PU_TELEGRAM_API_ROOT))) problems.push('PU_TELEGRAM_API_ROOT is invalid; expected an http(s) URL');
  if (String(r.PU_STATIC_SALT).length < MIN_SALT_LENGTH) {
    problems.push(`PU_STATIC_SALT is too short: at least ${MIN_SALT_LENGTH} characters (changing it locks existing accounts out, so choose it once; \`openssl rand -base64 32\`)`);
  }
  const appPrefix = String(r.PU_APP_PREFIX);
  const apiV1Prefix = String(r.PU_API_V1_PREFIX);
  for (const [name, value] of [['PU_APP_PREFIX', appPrefix], ['PU_API_V1_PREFIX', apiV1Prefix]] as const) {
    if (!/^\/[A-Za-z0-9_\-/.]*[A-Za-z0-9_\-.]$/.test(value)) problems.push(`${name}=${JSON.stringify(value)} is invalid; expected a path such as /pepeunit`);
  }
  for (const entry of String(r.PU_MQTT_CALLBACK_ALLOWED_NETWORKS).split(',').map((x) => x.trim()).filter(Boolean)) {
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const bits = prefix === undefined ? null : Number(prefix);
    if (family === 0 || extra !== undefined || (bits !== null && (!Number.isInteger(bits) || bits < 0 || bits > (family === 6 ? 128 : 32)))) {
      problems.push(`PU_MQTT_CALLBACK_ALLOWED_NETWORKS: ${JSON.stringify(entry)} is not an address or CIDR network (e.g. 10.0.0.0/8, 127.0.0.1, ::1)`);
    }
  }
  problems.push(...loadProblems(r));
  if (problems.length > 0) throw new ConfigError(problems, 'backend');
  const secure = Boolean(r.PU_SECURE);
  const httpType = secure ? 'https' : 'http';
  const domain = String(r.PU_DOMAIN).trim();
  const publicPort = Number(r.PU_PUBLIC_PORT);
  const defaultPort = secure ? 443 : 80;
  const publicHost = publicPort > 0 && publicPort !== defaultPort ? `${domain}:${publicPort}` : domain;
  const link = `${httpType}://${publicHost}`;
  const port = Number(r.PU_BACKEND_PORT);
  const mqttHost = String(r.PU_MQTT_HOST);
  const mqttSecure = Boolean(r.PU_MQTT_SECURE);
  const apiPort = Number(r.PU_MQTT_API_PORT);
  const publicUrl = trimSlash(String(r.PU_BACKEND_PUBLIC_URL) || `http://127.0.0.1:${port}`);
  return {
    domain,
    publicHost,
    secure,
    appPrefix,
    apiV1Prefix,
    secretKey: String(r.PU_SECRET_KEY),
    encryptKey,
    staticSalt: String(r.PU_STATIC_SALT),
    postgresUrl: String(r.PU_SQLALCHEMY_DATABASE_URL),
    clickhouseUrl: String(r.PU_CLICKHOUSE_DATABASE_URL),
    clickhouseDatabase: String(r.PU_CLICKHOUSE_DATABASE),
    redisUrl: String(r.PU_REDIS_URL),
    logLevel: LOG_LEVELS[String(r.PU_MIN_LOG_LEVEL)] ?? 'info',
    logFormat: r.PU_LOG_FORMAT === 'plain' ? 'plain' : 'json',
    host: String(r.PU_BACKEND_HOST),
    port,
    authTokenExpiration: Number(r.PU_AUTH_TOKEN_EXPIRATION),
    stateSendInterval: Number(r.PU_STATE_SEND_INTERVAL),
    unitLogExpiration: Number(r.PU_UNIT_LOG_EXPIRATION),
    maxPaginationSize: Number(r.PU_MAX_PAGINATION_SIZE),
    datapipeReadCacheMs: Number(r.PU_DATAPIPE_READ_CACHE_MS),
    maxCipherLength: Number(r.PU_MAX_CIPHER_LENGTH),
    saveRepoPath: String(r.PU_SAVE_REPO_PATH),
    maxExternalRepoSizeMb: Number(r.PU_MAX_EXTERNAL_REPO_SIZE),
    minIntervalSyncRepository: Number(r.PU_MIN_INTERVAL_SYNC_REPOSITORY),
    workerCount: Number(r.PU_WORKER_COUNT),
    shutdownTimeoutSeconds: Number(r.PU_SHUTDOWN_TIMEOUT),
    gitAllowedProtocols: String(r.PU_GIT_ALLOWED_PROTOCOLS).split(',').map((x) => x.trim().toLowerCase()).filter(Boolean),
    registrySyncIntervalHours: Number(r.PU_REGISTRY_SYNC_INTERVAL_HOURS),
    symbols: {
      nameEntity: String(r.PU_AVAILABLE_NAME_ENTITY_SYMBOLS) || 'A-Za-z0-9_.-',
      password: String(r.PU_AVAILABLE_PASSWORD_SYMBOLS),
      topic: String(r.PU_AVAILABLE_TOPIC_SYMBOLS) || 'A-Za-z0-9/_-',
    },
    backendPublicUrl: String(r.PU_BACKEND_PUBLIC_URL).trim(),
    backendShareGroup: String(r.PU_BACKEND_SHARE_GROUP ?? '').trim(),
    gitPlatform: {
      apiBaseUrl: String(r.PU_GIT_PLATFORM_API_BASE_URL ?? '').trim(),
      githubTokenName: String(r.PU_GITHUB_TOKEN_NAME ?? ''),
      githubTokenPat: String(r.PU_GITHUB_TOKEN_PAT ?? ''),
    },
    clickhouseCluster: String(r.PU_CLICKHOUSE_CLUSTER ?? '').trim(),
    registryTrustedHosts: trustedRepositoryHosts(String(r.PU_REGISTRY_ALLOWED_PRIVATE_HOSTS), String(r.PU_GIT_PLATFORM_API_BASE_URL)),
    http: {
      accessLog: r.PU_ACCESS_LOG === 'all' ? 'all' : r.PU_ACCESS_LOG === 'off' ? 'off' : 'errors',
      slowRequestMs: Number(r.PU_SLOW_REQUEST_MS),
    },
    loginLimits: {
      attemptsPerAddress: Number(r.PU_LOGIN_ATTEMPTS_PER_ADDRESS),
      failuresPerLogin: Number(r.PU_LOGIN_FAILURES_PER_LOGIN),
      windowSeconds: Number(r.PU_LOGIN_WINDOW_SECONDS),
    },
    brokerCallbacks: {
      secret: brokerCallbackSecret(String(r.PU_MQTT_CALLBACK_SECRET), String(r.PU_SECRET_KEY)),
      allowedNetworks: String(r.PU_MQTT_CALLBACK_ALLOWED_NETWORKS).split(',').map((x) => x.trim()).filter(Boolean),
    },
    unitsAutoUpdateIntervalMinutes: Number(r.PU_UNITS_AUTO_UPDATE_INTERVAL_MINUTES),
    telegram: {
      mode: r.PU_TELEGRAM_BOT_MODE === 'pooling' ? 'pooling' : 'webhook',
      delOldWebhook: Boolean(r.PU_TELEGRAM_DEL_OLD_WEBHOOK),
      token: String(r.PU_TELEGRAM_TOKEN),
      botLink: String(r.PU_TELEGRAM_BOT_LINK),
      itemsPerPage: Number(r.PU_TELEGRAM_ITEMS_PER_PAGE),
      headerEntityLength: Number(r.PU_TELEGRAM_HEADER_ENTITY_LENGTH),
      gitHashLength: Number(r.PU_TELEGRAM_GIT_HASH_LENGTH),
      proxyUrl: String(r.PU_TELEGRAM_PROXY_URL),
      apiRoot: trimSlash(String(r.PU_TELEGRAM_API_ROOT)),
      webhookSecret: String(r.PU_TELEGRAM_WEBHOOK_SECRET) || createHmac('sha256', String(r.PU_SECRET_KEY)).update('pepeunit telegram webhook').digest('base64url'),
      verificationCodeTtl: Number(r.PU_TELEGRAM_VERIFICATION_CODE_TTL),
      alertIntervalSeconds: Number(r.PU_TELEGRAM_ALERT_INTERVAL),
      globalRate: Number(r.PU_TELEGRAM_GLOBAL_RATE),
    },
    alerts: {
      webhookSecret: String(r.PU_ALERT_WEBHOOK_SECRET) || createHmac('sha256', String(r.PU_SECRET_KEY)).update('pepeunit alert webhook').digest('base64url'),
      webhookAck: r.PU_ALERT_WEBHOOK_ACK === 'stored' ? 'stored' : 'queued',
      webhookConnections: Number(r.PU_ALERT_WEBHOOK_CONNECTIONS),
      queueMax: Number(r.PU_ALERT_QUEUE_MAX),
      historyDays: Number(r.PU_ALERT_HISTORY_DAYS),
      disconnectStorm: Number(r.PU_ALERT_DISCONNECT_STORM),
    },
    load: {
      sampleIntervalSeconds: Number(r.PU_LOAD_SAMPLE_INTERVAL),
      unitMpsLimit: Number(r.PU_LOAD_UNIT_MPS_LIMIT),
      cutoffEnabled: Boolean(r.PU_LOAD_CUTOFF_ENABLE),
      excessWindowSeconds: Number(r.PU_LOAD_EXCESS_WINDOW),
      excessFactor: Number(r.PU_LOAD_EXCESS_FACTOR),
      cutoffLadderSeconds: parseLadder(String(r.PU_LOAD_CUTOFF_LADDER)),
      cutoffResetSeconds: Number(r.PU_LOAD_CUTOFF_RESET),
      nodeStateIntervalSeconds: Number(r.PU_NODE_STATE_INTERVAL),
      errorAlertIntervalSeconds: Number(r.PU_ERROR_ALERT_INTERVAL),
    },
    billing: {
      cycleIntervalSeconds: Number(r.PU_BILLING_CYCLE_INTERVAL_SECONDS),
      cryptoPay: {
        token: String(r.PU_BILLING_CRYPTO_PAY_TOKEN),
        apiUrl: trimSlash(String(r.PU_BILLING_CRYPTO_PAY_API_URL)),
        acceptedAssets: String(r.PU_BILLING_CRYPTO_PAY_ACCEPTED_ASSETS).split(',').map((x) => x.trim().toUpperCase()).filter(Boolean),
      },
      starsEnabled: Boolean(r.PU_BILLING_STARS_ENABLE),
    },
    featureFlags: {
      telegramBot: Boolean(r.PU_FF_TELEGRAM_BOT_ENABLE),
      grafana: Boolean(r.PU_FF_GRAFANA_INTEGRATION_ENABLE),
      datapipe: Boolean(r.PU_FF_DATAPIPE_ENABLE),
      datapipeDefaultLastValue: Boolean(r.PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE),
      prometheus: Boolean(r.PU_FF_PROMETHEUS_ENABLE),
    },
    mqtt: {
      host: mqttHost,
      port: Number(r.PU_MQTT_PORT),
      secure: mqttSecure,
      apiPort,
      keepalive: Number(r.PU_MQTT_KEEPALIVE),
      maxPayloadSizeKb: Number(r.PU_MQTT_MAX_PAYLOAD_SIZE),
      maxClients: Number(r.PU_MQTT_MAX_CLIENTS),
      maxClientConnectionRate: String(r.PU_MQTT_MAX_CLIENT_CONNECTION_RATE),
      maxClientIdLen: Number(r.PU_MQTT_MAX_CLIENT_ID_LEN),
      clientMaxMessagesRate: String(r.PU_MQTT_CLIENT_MAX_MESSAGES_RATE),
      clientMaxBytesRate: String(r.PU_MQTT_CLIENT_MAX_BYTES_RATE),
      maxQos: Number(r.PU_MQTT_MAX_QOS),
      maxTopicLevels: Number(r.PU_MQTT_MAX_TOPIC_LEVELS),
      maxLenMessageQueue: Number(r.PU_MQTT_MAX_LEN_MESSAGE_QUEUE),
      maxTopicAlias: Number(r.PU_MQTT_MAX_TOPIC_ALIAS),
    },
    emqx: {
      apiUrl: trimSlash(String(r.PU_EMQX_API_URL) || (mqttSecure ? `https://${mqttHost}` : `http://${mqttHost}:${apiPort}`)),
      apiKey: String(r.PU_EMQX_API_KEY),
      apiSecret: String(r.PU_EMQX_API_SECRET),
      username: String(r.PU_MQTT_USERNAME),
      password: String(r.PU_MQTT_PASSWORD),
    },
    links: {
      httpType,
      link,
      linkPrefix: link + appPrefix,
      linkPrefixAndV1: link + appPrefix + apiV1Prefix,
      callbackBase: publicUrl + appPrefix + apiV1Prefix,
    },
  };
}

export interface IngestConfig {
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  readonly domain: string;
  readonly secretKey: string;
  readonly postgresUrl: string;
  readonly clickhouseUrl: string;
  readonly clickhouseDatabase: string;
  readonly redisUrl: string;
  readonly mqttHost: string;
  readonly mqttPort: number;
  readonly mqttKeepalive: number;
  readonly configSyncIntervalSeconds: number;
  readonly nRecordsCleanupIntervalSeconds: number;
  readonly bufferFlushIntervalSeconds: number;
  readonly bufferMaxSize: number;
  readonly intakeMode: 'rules' | 'go-compatible';
  readonly shareGroup: string;
  readonly retryBufferMaxRows: number;
  readonly metricsPort: number;
  /** PU_NODE_STATE_INTERVAL: node-state samples (issue 13); 0 = off. */
  readonly nodeStateIntervalSeconds: number;
  readonly maxPayloadSizeKb: number;
}

export function loadIngestConfig(env: NodeJS.ProcessEnv = process.env): IngestConfig {
  const r = parseVariables(INGEST_VARIABLES, env, 'ingest');
  const problems = weakSecretProblems('PU_DP_SECRET_KEY', String(r.PU_DP_SECRET_KEY));
  if (problems.length > 0) throw new ConfigError(problems, 'ingest');
  return {
    logLevel: String(r.PU_DP_LOG_LEVEL) as IngestConfig['logLevel'],
    domain: String(r.PU_DP_DOMAIN).trim(),
    secretKey: String(r.PU_DP_SECRET_KEY),
    postgresUrl: String(r.PU_DP_SQLALCHEMY_DATABASE_URL),
    clickhouseUrl: String(r.PU_DP_CLICKHOUSE_DATABASE_URL),
    clickhouseDatabase: String(r.PU_DP_CLICKHOUSE_DATABASE),
    redisUrl: String(r.PU_DP_REDIS_URL),
    mqttHost: String(r.PU_DP_MQTT_HOST),
    mqttPort: Number(r.PU_DP_MQTT_PORT),
    mqttKeepalive: Number(r.PU_DP_MQTT_KEEPALIVE),
    configSyncIntervalSeconds: Number(r.PU_DP_CONFIG_SYNC_INTERVAL),
    nRecordsCleanupIntervalSeconds: Number(r.PU_DP_NRECORDS_CLEANUP_INTERVAL),
    bufferFlushIntervalSeconds: Number(r.PU_DP_BUFFER_FLUSH_INTERVAL),
    bufferMaxSize: Number(r.PU_DP_BUFFER_MAX_SIZE),
    intakeMode: r.PU_DP_INTAKE_MODE === 'rules' ? 'rules' : 'go-compatible',
    shareGroup: String(r.PU_DP_SHARE_GROUP),
    retryBufferMaxRows: Number(r.PU_DP_RETRY_BUFFER_MAX_ROWS),
    metricsPort: Number(r.PU_DP_METRICS_PORT),
    nodeStateIntervalSeconds: Number(r.PU_NODE_STATE_INTERVAL),
    maxPayloadSizeKb: Number(r.PU_MQTT_MAX_PAYLOAD_SIZE),
  };
}

/**
 * Loads a configuration or stops the process with one message naming every bad variable.
 * Used at the top of each process entry point.
 */
export function loadOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\nSee docs/OPERATIONS.md for every variable.\n');
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}

/** Markdown table of a variable group, used to keep docs/OPERATIONS.md in sync (a test compares). */
export function variablesMarkdown(specs: readonly VariableSpec[]): string {
  const rows = specs.map((s) => `| \`${s.name}\` | ${s.default === undefined ? '**required**' : s.default === '' ? '(empty)' : `\`${s.default}\``} | ${s.description}${s.ours ? ' *(ours)*' : ''} |`);
  return ['| Variable | Default | Meaning |', '|---|---|---|', ...rows].join('\n');
}
