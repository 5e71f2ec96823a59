// The reconciler of stable rule families (`cnt-`, `alert-`): rules that are created with their
// owner and deleted with it, never edited, because every PUT resets a rule's metrics
// (reference/emqx-5.md §2.3) and those metrics are what the backend samples.
//
// - `planStableRules` (pure): from EMQX's rules of the family and the wanted ones, what to
//   create, what to delete, and what to recreate (a rule whose SQL, actions or enable flag
//   differ — an operator's edit, or a changed PU_DOMAIN — is deleted and created again, never
//   PUT; a different description alone is left as it is, since recreating resets the counter).
// - `reconcileStableRules` (the I/O part): lists the family by prefix (`like_id`, paginated;
//   `like_id` is a substring filter, so ids are re-checked), then POSTs missing rules (a 400
//   "already exists" means another replica created it: present) and DELETEs the rest (404 =
//   already gone), with bounded concurrency and progress reports — a bulk run over thousands of
//   rules writes only the difference.
// - Per-owner mode (`owners`): only the rules whose id ends with `-<owner uuid>` are read (one
//   `like_id=<uuid>` listing per owner) and touched, so a unit change costs a few requests.
// Failed operations do not stop the others; they are reported in a `StableReconcileError`
// carrying the partial result.
import { EmqxApiError } from '../management-client.js';
import type { EmqxManagementClient } from '../management-client.js';
import type { RuleInfo } from '../emqx-types.js';
import { silentLogger } from '../logger.js';
import type { Logger } from '../logger.js';
import { isValidRuleId } from './catalogue.js';
import type { RuleSpec } from './catalogue.js';
import { ruleDifferences } from './compare.js';
import { forEachConcurrently, ruleBody } from './reconciler.js';

export interface StableRuleSetSpec {
  /** The family prefix (`cnt-`, `alert-`); every wanted id must start with it. */
  prefix: string;
  /**
   * The wanted rules, or a function producing them (called after EMQX's rules were listed, so
   * data it reads is never older than the listing).
   */
  wanted: readonly RuleSpec[] | (() => Promise<readonly RuleSpec[]>);
  /** Per-owner mode: only rules of these owners (ids ending with `-<uuid>`) are read and changed. */
  owners?: readonly string[];
}

export interface StableReconcileOptions {
  /** Operations in flight at once (default 16). */
  concurrency?: number;
  /** Page size when listing (1..10000, default 10000). */
  pageSize?: number;
  /** Compute and report the difference without writing anything. */
  dryRun?: boolean;
  logger?: Logger;
  /** Called after every operation with the number done and the total to do. */
  onProgress?(progress: { done: number; total: number }): void;
}

export interface StableReconcileResult {
  created: string[];
  deleted: string[];
  /** Deleted and created again because EMQX's copy differed. */
  recreated: string[];
  /** Already as wanted (or created concurrently by someone else). */
  present: string[];
  failed: Array<{ id: string; operation: 'create' | 'delete' | 'recreate'; error: string }>;
  durationMs: number;
}

export class StableReconcileError extends Error {
  constructor(readonly result: StableReconcileResult) {
    const first = result.failed[0];
    super(`${result.failed.length} stable rule operation(s) failed${first ? `, first: ${first.operation} ${first.id}: ${first.error}` : ''}`);
    this.name = 'StableReconcileError';
  }
}

export interface StablePlan {
  create: RuleSpec[];
  delete: string[];
  recreate: RuleSpec[];
  present: string[];
}

/** Fields whose difference makes a stable rule be recreated. */
const FUNCTIONAL_FIELDS = new Set(['sql', 'actions', 'enable']);

/** What to do to turn `existing` (EMQX's rules of the family) into `wanted`. Pure. */
export function planStableRules(existing: ReadonlyArray<Pick<RuleInfo, 'id' | 'sql' | 'actions' | 'enable' | 'description'>>, wanted: readonly RuleSpec[]): StablePlan {
  const wantedById = new Map(wanted.map((rule) => [rule.id, rule]));
  const plan: StablePlan = { create: [], delete: [], recreate: [], present: [] };
  const seen = new Set<string>();
  for (const rule of existing) {
    seen.add(rule.id);
    const want = wantedById.get(rule.id);
    if (!want) {
      plan.delete.push(rule.id);
      continue;
    }
    if (ruleDifferences(want, rule).some((field) => FUNCTIONAL_FIELDS.has(field))) plan.recreate.push(want);
    else plan.present.push(rule.id);
  }
  for (const want of wanted) if (!seen.has(want.id)) plan.create.push(want);
  return plan;
}

function describe(error: unknown): string {
  if (error instanceof EmqxApiError) return `${error.status} ${error.code}: ${error.emqxMessage}`;
  return error instanceof Error ? error.message : String(error);
}

function isAlreadyExists(error: unknown): boolean {
  return error instanceof EmqxApiError && error.status === 400 && /already exist/i.test(error.emqxMessage);
}

const OWNER_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function checkWanted(spec: StableRuleSetSpec, wanted: readonly RuleSpec[], owners: readonly string[] | undefined): RuleSpec[] {
  const ids = new Set<string>();
  for (const rule of wanted) {
    if (!rule.id.startsWith(spec.prefix)) throw new Error(`rule ${rule.id} does not belong to the family ${spec.prefix}`);
    if (!isValidRuleId(rule.id)) throw new Error(`rule id ${JSON.stringify(rule.id)} is not a valid EMQX rule id`);
    if (ids.has(rule.id)) throw new Error(`rule ${rule.id} is wanted twice`);
    if (owners && !owners.some((owner) => rule.id.endsWith(`-${owner}`))) throw new Error(`rule ${rule.id} belongs to none of the owners ${owners.join(', ')}`);
    ids.add(rule.id);
  }
  return [...wanted];
}

/** EMQX's rules of the family, or of the family and owners in per-owner mode. */
async function listExisting(client: EmqxManagementClient, prefix: string, owners: readonly string[] | undefined, pageSize: number): Promise<RuleInfo[]> {
  if (!owners) {
    const rules = await client.listAllRules({ like_id: prefix, limit: pageSize });
    return rules.filter((rule) => typeof rule.id === 'string' && rule.id.startsWith(prefix));
  }
  const byId = new Map<string, RuleInfo>();
  for (const owner of owners) {
    for (const rule of await client.listAllRules({ like_id: owner, limit: pageSize })) {
      if (typeof rule.id === 'string' && rule.id.startsWith(prefix) && rule.id.endsWith(`-${owner}`)) byId.set(rule.id, rule);
    }
  }
  return [...byId.values()];
}

/**
 * Makes the family's rules (or the owners' rules) in EMQX equal to `spec.wanted` by creating
 * and deleting only. Resolves with what changed; rejects with `StableReconcileError` (carrying the
 * result) when some operations failed, or with the API error when listing failed.
 */
export async function reconcileStableRules(client: EmqxManagementClient, spec: StableRuleSetSpec, options: StableReconcileOptions = {}): Promise<StableReconcileResult> {
  const started = Date.now();
  const logger = options.logger ?? silentLogger;
  if (!spec.prefix || !isValidRuleId(`${spec.prefix}x`)) throw new Error(`rule family prefix ${JSON.stringify(spec.prefix)} is not usable in rule ids`);
  const owners = spec.owners?.map((owner) => owner.toLowerCase());
  for (const owner of owners ?? []) if (!OWNER_UUID.test(owner)) throw new Error(`owner ${JSON.stringify(owner)} is not a UUID`);

  const existing = await listExisting(client, spec.prefix, owners, options.pageSize ?? 10_000);
  const wanted = checkWanted(spec, typeof spec.wanted === 'function' ? await spec.wanted() : spec.wanted, owners);
  const plan = planStableRules(existing, wanted);

  const result: StableReconcileResult = { created: [], deleted: [], recreated: [], present: [...plan.present], failed: [], durationMs: 0 };
  const total = plan.create.length + plan.delete.length + plan.recreate.length;
  const scope = owners ? { prefix: spec.prefix, owners } : { prefix: spec.prefix };
  if (total > 0 || !owners) {
    logger.info({ ...scope, wanted: wanted.length, existing: existing.length, create: plan.create.length, delete: plan.delete.length, recreate: plan.recreate.length, dryRun: options.dryRun === true }, 'reconciling stable EMQX rules');
  }
  if (options.dryRun) {
    result.created.push(...plan.create.map((rule) => rule.id));
    result.deleted.push(...plan.delete);
    result.recreated.push(...plan.recreate.map((rule) => rule.id));
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
      logger.info({ ...scope, done, total }, 'reconciling stable EMQX rules: progress');
    }
  };
  /** POST; true when created, false when someone else had created it. */
  const create = async (rule: RuleSpec): Promise<boolean> => {
    try {
      await client.createRule({ id: rule.id, ...ruleBody(rule) });
      return true;
    } catch (error) {
      if (isAlreadyExists(error)) return false;
      throw error;
    }
  };
  type Operation = { kind: 'create' | 'recreate'; rule: RuleSpec } | { kind: 'delete'; id: string };
  const operations: Operation[] = [
    ...plan.delete.map((id) => ({ kind: 'delete' as const, id })),
    ...plan.recreate.map((rule) => ({ kind: 'recreate' as const, rule })),
    ...plan.create.map((rule) => ({ kind: 'create' as const, rule })),
  ];
  await forEachConcurrently(operations, options.concurrency ?? 16, async (operation) => {
    const id = operation.kind === 'delete' ? operation.id : operation.rule.id;
    try {
      if (operation.kind === 'delete') {
        await client.deleteRule(id); // false (404) = already gone: fine
        result.deleted.push(id);
      } else if (operation.kind === 'recreate') {
        await client.deleteRule(id);
        (await create(operation.rule) ? result.recreated : result.present).push(id);
        logger.info({ rule: id }, 'stable rule differed from the wanted one: recreated');
      } else {
        (await create(operation.rule) ? result.created : result.present).push(id);
      }
    } catch (error) {
      result.failed.push({ id, operation: operation.kind, error: describe(error) });
    }
    progress();
  });

  result.durationMs = Date.now() - started;
  const summary = { ...scope, created: result.created.length, deleted: result.deleted.length, recreated: result.recreated.length, present: result.present.length, failed: result.failed.length, durationMs: result.durationMs };
  if (result.failed.length > 0) {
    logger.warn(summary, 'stable EMQX rules reconciled with failures');
    throw new StableReconcileError(result);
  }
  if (total > 0 || !owners) logger.info(summary, 'stable EMQX rules reconciled');
  return result;
}
