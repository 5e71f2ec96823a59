// The rule reconciler: makes EMQX's rules of one family (one id prefix) equal to a wanted list,
// writing only the difference.
//
// - Lists EMQX's rules with `like_id=<prefix>` in pages of up to 10000 and keeps only ids that
//   really start with the prefix (`like_id` is a substring match, so `count-pipe-x` would match
//   `pipe-`); rules of other families and hand-made rules are never touched.
// - Compares semantically (compare.ts) and sends `PUT /rules/{id}` (EMQX's upsert) for missing or
//   changed rules and `DELETE` for rules no longer wanted, with bounded concurrency.
// - Idempotent and safe from several replicas at once: PUT is an upsert, a 404 on DELETE means
//   someone else already deleted it, and a PUT that EMQX would answer 404 (if an EMQX version did
//   not upsert) falls back to POST, whose "already exists" falls back to PUT again.
// - Failed operations do not stop the others; they are reported at the end in a
//   `RuleReconcileError` carrying the partial result, so the caller can retry later.
import { EmqxApiError } from '../management-client.js';
import type { EmqxManagementClient } from '../management-client.js';
import type { RuleCreate, RuleInfo } from '../emqx-types.js';
import { silentLogger } from '../logger.js';
import type { Logger } from '../logger.js';
import { isValidRuleId } from './catalogue.js';
import type { RuleSpec } from './catalogue.js';
import { ruleDifferences } from './compare.js';

export interface ReconcileRulesOptions {
  /** Operations in flight at once (default 16). */
  concurrency?: number;
  /** Page size when listing EMQX's rules (1..10000, default 10000). */
  pageSize?: number;
  /** Compute and report the difference without writing anything. */
  dryRun?: boolean;
  logger?: Logger;
  /** Called after every write with the number done and the total to do. */
  onProgress?(progress: { done: number; total: number }): void;
}

export interface RuleReconcileResult {
  created: string[];
  updated: string[];
  deleted: string[];
  unchanged: string[];
  /** Operations that failed (only in `RuleReconcileError.result`). */
  failed: Array<{ id: string; operation: 'put' | 'delete'; error: string }>;
  durationMs: number;
}

export class RuleReconcileError extends Error {
  constructor(readonly result: RuleReconcileResult) {
    const first = result.failed[0];
    super(`${result.failed.length} rule operation(s) failed${first ? `, first: ${first.operation} ${first.id}: ${first.error}` : ''}`);
    this.name = 'RuleReconcileError';
  }
}

export interface RuleSetSpec {
  /** The family prefix (`pipe-`); every wanted id must start with it. */
  prefix: string;
  /**
   * The wanted rules, or a function producing them. A function is called after EMQX's rules
   * were listed, so data read by it is never older than the listing: a rule created for a
   * change made while the listing ran is then seen as wanted, not deleted as stray.
   */
  wanted: readonly RuleSpec[] | (() => Promise<readonly RuleSpec[]>);
}

/** The body of `PUT /rules/{id}` for a spec. */
export function ruleBody(spec: RuleSpec): Omit<RuleCreate, 'id'> {
  const body: Omit<RuleCreate, 'id'> = { sql: spec.sql, actions: spec.actions, enable: spec.enable, description: spec.description };
  if (spec.name !== undefined) body.name = spec.name;
  return body;
}

function describe(error: unknown): string {
  if (error instanceof EmqxApiError) return `${error.status} ${error.code}: ${error.emqxMessage}`;
  return error instanceof Error ? error.message : String(error);
}

/** Runs `task` for every item with at most `limit` in flight. */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await task(item);
    }
  });
  await Promise.all(workers);
}

/** PUT (upsert); with a POST fallback for an EMQX that would answer 404 to PUT on a new id. */
async function writeRule(client: EmqxManagementClient, spec: RuleSpec): Promise<void> {
  try {
    await client.upsertRule(spec.id, ruleBody(spec));
  } catch (error) {
    if (!(error instanceof EmqxApiError && error.status === 404)) throw error;
    try {
      await client.createRule({ id: spec.id, ...ruleBody(spec) });
    } catch (createError) {
      if (createError instanceof EmqxApiError && createError.status === 400 && /already exist/i.test(createError.emqxMessage)) {
        await client.upsertRule(spec.id, ruleBody(spec));
        return;
      }
      throw createError;
    }
  }
}

function checkWanted(prefix: string, wanted: readonly RuleSpec[]): Map<string, RuleSpec> {
  const byId = new Map<string, RuleSpec>();
  for (const spec of wanted) {
    if (!spec.id.startsWith(prefix)) throw new Error(`rule ${spec.id} does not belong to the family ${prefix}`);
    if (!isValidRuleId(spec.id)) throw new Error(`rule id ${JSON.stringify(spec.id)} is not a valid EMQX rule id`);
    if (byId.has(spec.id)) throw new Error(`rule ${spec.id} is wanted twice`);
    byId.set(spec.id, spec);
  }
  return byId;
}

/** EMQX's rules of one family (ids starting with `prefix`). */
export async function listFamilyRules(client: EmqxManagementClient, prefix: string, pageSize = 10_000): Promise<RuleInfo[]> {
  const rules = await client.listAllRules({ like_id: prefix, limit: pageSize });
  return rules.filter((rule) => typeof rule.id === 'string' && rule.id.startsWith(prefix));
}

/**
 * Makes the family's rules in EMQX equal to `spec.wanted`. Resolves with what changed; rejects
 * with `RuleReconcileError` (carrying the result) when some writes failed, or with the API error
 * when EMQX's rules could not be listed.
 */
export async function reconcileRules(client: EmqxManagementClient, spec: RuleSetSpec, options: ReconcileRulesOptions = {}): Promise<RuleReconcileResult> {
  const started = Date.now();
  const logger = options.logger ?? silentLogger;
  const concurrency = options.concurrency ?? 16;
  if (!spec.prefix || !isValidRuleId(`${spec.prefix}x`)) throw new Error(`rule family prefix ${JSON.stringify(spec.prefix)} is not usable in rule ids`);

  const existing = await listFamilyRules(client, spec.prefix, options.pageSize);
  const wanted = checkWanted(spec.prefix, typeof spec.wanted === 'function' ? await spec.wanted() : spec.wanted);

  const result: RuleReconcileResult = { created: [], updated: [], deleted: [], unchanged: [], failed: [], durationMs: 0 };
  const toPut: Array<{ spec: RuleSpec; isNew: boolean; changed: string[] }> = [];
  const existingIds = new Set<string>();
  for (const rule of existing) {
    existingIds.add(rule.id);
    const want = wanted.get(rule.id);
    if (!want) continue;
    const changed = ruleDifferences(want, rule);
    if (changed.length === 0) result.unchanged.push(rule.id);
    else toPut.push({ spec: want, isNew: false, changed });
  }
  for (const want of wanted.values()) if (!existingIds.has(want.id)) toPut.push({ spec: want, isNew: true, changed: [] });
  const toDelete = existing.filter((rule) => !wanted.has(rule.id)).map((rule) => rule.id);

  const total = toPut.length + toDelete.length;
  logger.info({ prefix: spec.prefix, wanted: wanted.size, existing: existing.length, put: toPut.length, delete: toDelete.length, dryRun: options.dryRun === true }, 'reconciling EMQX rules');
  if (options.dryRun) {
    for (const item of toPut) (item.isNew ? result.created : result.updated).push(item.spec.id);
    result.deleted.push(...toDelete);
    result.durationMs = Date.now() - started;
    return result;
  }

  let done = 0;
  let lastLog = Date.now();
  const progress = (): void => {
    done += 1;
    options.onProgress?.({ done, total });
    if (Date.now() - lastLog >= 5_000) {
      lastLog = Date.now();
      logger.info({ prefix: spec.prefix, done, total }, 'reconciling EMQX rules: progress');
    }
  };
  type Operation = { kind: 'put'; item: (typeof toPut)[number] } | { kind: 'delete'; id: string };
  const operations: Operation[] = [...toPut.map((item) => ({ kind: 'put' as const, item })), ...toDelete.map((id) => ({ kind: 'delete' as const, id }))];
  await forEachConcurrently(operations, concurrency, async (operation) => {
    if (operation.kind === 'put') {
      const { spec: rule, isNew, changed } = operation.item;
      try {
        await writeRule(client, rule);
        (isNew ? result.created : result.updated).push(rule.id);
        logger.debug({ rule: rule.id, created: isNew, changed }, 'rule written');
      } catch (error) {
        result.failed.push({ id: rule.id, operation: 'put', error: describe(error) });
      }
    } else {
      try {
        await client.deleteRule(operation.id); // false (404) = already gone: fine
        result.deleted.push(operation.id);
      } catch (error) {
        result.failed.push({ id: operation.id, operation: 'delete', error: describe(error) });
      }
    }
    progress();
  });

  result.durationMs = Date.now() - started;
  const summary = { prefix: spec.prefix, created: result.created.length, updated: result.updated.length, deleted: result.deleted.length, unchanged: result.unchanged.length, failed: result.failed.length, durationMs: result.durationMs };
  if (result.failed.length > 0) {
    logger.warn(summary, 'EMQX rules reconciled with failures');
    throw new RuleReconcileError(result);
  }
  logger.info(summary, 'EMQX rules reconciled');
  return result;
}

export type SingleRuleOutcome = 'created' | 'updated' | 'deleted' | 'unchanged' | 'absent';

/**
 * Fast path for one rule (a policy change): `wanted` = the rule to have, or null to have none.
 * Reads the rule, then PUTs it only when missing or different, or DELETEs it.
 */
export async function reconcileRule(client: EmqxManagementClient, id: string, wanted: RuleSpec | null, options: { logger?: Logger } = {}): Promise<SingleRuleOutcome> {
  const logger = options.logger ?? silentLogger;
  if (wanted === null) {
    const deleted = await client.deleteRule(id);
    if (deleted) logger.info({ rule: id }, 'rule deleted');
    return deleted ? 'deleted' : 'absent';
  }
  if (wanted.id !== id) throw new Error(`reconcileRule: spec id ${wanted.id} differs from ${id}`);
  if (!isValidRuleId(id)) throw new Error(`rule id ${JSON.stringify(id)} is not a valid EMQX rule id`);
  const current = await client.getRule(id);
  if (current && ruleDifferences(wanted, current).length === 0) return 'unchanged';
  await writeRule(client, wanted);
  logger.info({ rule: id, created: !current }, current ? 'rule updated' : 'rule created');
  return current ? 'updated' : 'created';
}
