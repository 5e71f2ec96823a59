/**
 * Names several processes must agree on (issue 11: one home per cross-process contract). The
 * backend, the ingest, the launcher and the Ansible roles import them from here.
 */

/** Postgres NOTIFY channel: a DataPipe config changed; payload = node uuid(s), empty = reload all. */
export const DATAPIPE_NOTIFY_CHANNEL = 'pepeunit_datapipe_changed';
/** Redis stream the reference backend writes DataPipe node changes to (the Go DataPipe reads it). */
export const DATAPIPE_STREAM_KEY = 'backend_data_pipe_nodes';
/** Postgres NOTIFY channel: access decisions changed (tokens, blocks, permissions); payload = reason. */
export const ACL_NOTIFY_CHANNEL = 'pepeunit_acl_changed';
/** Postgres NOTIFY channel (triggers of migration 020): units/nodes created or deleted, for the counting rules. */
export const LOAD_OWNERS_NOTIFY_CHANNEL = 'pepeunit_load_owners';

/**
 * Postgres advisory locks, one numbering scheme: the two-int form `(namespace, id)` with our
 * namespace 0x50455045 ('PEPE'). Locks per object use the object's hash as the second key under
 * their own namespace (`perObject`). Single-bigint locks (`hashtextextended(name, 0)`, the
 * registry's per-repository syncs) live in Postgres' other key space and cannot collide with these.
 */
export const ADVISORY_LOCK_NAMESPACE = 0x50455045;
export const ADVISORY_LOCKS = {
  migrations: [ADVISORY_LOCK_NAMESPACE, 1],
  pipeRulesReconcile: [ADVISORY_LOCK_NAMESPACE, 2],
  unitsAutoUpdate: [ADVISORY_LOCK_NAMESPACE, 3],
  /** Serialises the first-user-is-admin decision of sign-up. */
  userSignUp: [ADVISORY_LOCK_NAMESPACE, 4],
  /** Alert rules' periodic full diff (issue 12). */
  alertRulesReconcile: [ADVISORY_LOCK_NAMESPACE, 10],
  /** The one replica that long-polls Telegram (one poller per bot token). */
  telegramPolling: [ADVISORY_LOCK_NAMESPACE, 11],
  /** Counting rules' bulk reconcile (issue 13). */
  countingRulesReconcile: [ADVISORY_LOCK_NAMESPACE, 13],
  /** The one replica that samples the broker's rule counters (issue 13). */
  loadSampler: [ADVISORY_LOCK_NAMESPACE, 14],
  /** The billing cycle (statements, warnings, free-tier limits) runs on one replica (issue 14). */
  billingCycle: [ADVISORY_LOCK_NAMESPACE, 20],
  /** One instance load check (grade) at a time across replicas (issue 14). */
  gradeLoadCheck: [ADVISORY_LOCK_NAMESPACE, 21],
  registrySyncAll: [ADVISORY_LOCK_NAMESPACE, 0x52454701],
} as const satisfies Record<string, readonly [number, number]>;

/** Namespaces of per-object locks: `pg_advisory_lock(<namespace>, hashtext(<object id>))`. */
export const ADVISORY_LOCK_OBJECT_NAMESPACES = {
  /** Writes and deletes of one DataPipe node's stored data (REST import/delete). */
  nodeData: 0x50454401,
} as const;
