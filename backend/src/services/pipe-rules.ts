/**
 * Keeps EMQX's `pipe-` rules (one per unit node with an enabled DataPipe policy) equal to what
 * Postgres says, so only topics with an enabled policy leave the broker for the ingest
 * (ARCHITECTURE §3.2, reference/emqx-5.md §8.3 option A):
 *
 * - `reconcileNode(uuid)` — the fast path, called on every policy change (`app.datapipe.onChange`):
 *   reads the node and PUTs or DELETEs its one rule. Calls for one node are serialised, so the
 *   last change wins.
 * - `reconcileAll()` — the full diff, run periodically (default every 60 s) to heal drift (a
 *   missed change, an edited or deleted rule, a replica that crashed mid-way). Among replicas it
 *   is elected with `pg_try_advisory_lock`: one runs it, the others skip that round.
 *
 * A node wants a rule when `is_data_pipe_active AND data_pipe_yml IS NOT NULL` and its topic is
 * pipeable (`topic_name LIKE '%/pepeunit'`). With the DataPipe feature off, no node does.
 *
 * Failures (EMQX or Postgres unreachable, a refused rule) are logged and retried with backoff;
 * nothing here throws into a request or crashes the process.
 */
import { ADVISORY_LOCKS, serialRunner } from '@pepeunit/common';
import type { FastifyInstance } from 'fastify';
import type { Pool, PoolClient } from 'pg';
import { isUuid } from '@pepeunit/common/topics';
import { silentLogger, type Logger } from '@pepeunit/common';
import { PIPE_RULE_PREFIX, RuleReconcileError, checkDomain, reconcilePipeNode, reconcilePipeRules } from '@pepeunit/emqx-rules';
import type { EmqxManagementClient, RuleReconcileResult, SingleRuleOutcome } from '@pepeunit/emqx-rules';

/**
 * Advisory lock electing the replica that runs the full reconcile: 0x50455045 ("PEPE") as in
 * MIGRATION_LOCK_KEY (second half 1); second half 2 is this job.
 */
export const PIPE_RULES_LOCK_KEY = ADVISORY_LOCKS.pipeRulesReconcile;

/** Nodes that want a `pipe-` rule. */
export const ENABLED_PIPE_NODES_SQL = `
  SELECT uuid::text AS uuid FROM units_nodes
   WHERE is_data_pipe_active AND data_pipe_yml IS NOT NULL AND topic_name LIKE '%/pepeunit'`;

const NODE_SQL = `
  SELECT is_data_pipe_active AND data_pipe_yml IS NOT NULL AND topic_name LIKE '%/pepeunit' AS enabled
    FROM units_nodes WHERE uuid = $1`;

export interface PipeRulesOptions {
  readonly pg: Pool;
  /** The EMQX client, or a getter (the client may be created after this service). null = no EMQX API configured. */
  readonly client: EmqxManagementClient | null | (() => EmqxManagementClient | null);
  /** `PU_DOMAIN`: the first level of unit node topics. */
  readonly domain: string;
  /** `PU_FF_DATAPIPE_ENABLE`; when false every `pipe-` rule is removed (default true). */
  readonly enabled?: boolean;
  readonly logger?: Logger;
  /** Full reconcile period (default 60 000 ms; 0 = only on demand). */
  readonly intervalMs?: number;
  /** Delay of the first full reconcile after start (default 1000 ms; negative = none). */
  readonly initialDelayMs?: number;
  /** EMQX writes in flight during a full reconcile (default 16). */
  readonly concurrency?: number;
  /** First retry delay after a failure, doubled per attempt (default 1000 ms, capped at 30 s). */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
}

export type ReconcileAllOutcome =
  | { readonly status: 'done'; readonly result: RuleReconcileResult }
  | { readonly status: 'skipped'; readonly reason: string }
  | { readonly status: 'failed'; readonly error: string; readonly result?: RuleReconcileResult };

export type ReconcileNodeOutcome = SingleRuleOutcome | 'skipped' | 'failed';

export interface PipeRules {
  /** Full diff of `pipe-` rules against Postgres (elected among replicas). Never rejects. */
  reconcileAll(): Promise<ReconcileAllOutcome>;
  /** One node after a policy change. Never rejects; failures are retried in the background. */
  reconcileNode(nodeUuid: string): Promise<ReconcileNodeOutcome>;
  /** Stops the timer and pending retries, waits for running work. */
  close(): Promise<void>;
}

function message(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export function createPipeRules(opts: PipeRulesOptions): PipeRules {
  const logger = opts.logger ?? silentLogger;
  const intervalMs = opts.intervalMs ?? 60_000;
  const retryBaseMs = opts.retryBaseMs ?? 1000;
  const retryMaxMs = opts.retryMaxMs ?? 30_000;
  const getClient = typeof opts.client === 'function' ? opts.client : () => opts.client as EmqxManagementClient | null;
  const featureEnabled = opts.enabled ?? true;
  let domainProblem: string | undefined;
  try {
    checkDomain(opts.domain);
  } catch (error) {
    domainProblem = message(error);
    logger.error({ err: domainProblem }, 'PU_DOMAIN cannot be used in EMQX rule topics: pipe rules are not managed (fix PU_DOMAIN)');
  }

  let closed = false;
  let warnedNoClient = false;
  let periodic: NodeJS.Timeout | undefined;
  let initial: NodeJS.Timeout | undefined;
  let allRetry: NodeJS.Timeout | undefined;
  let allFailures = 0;
  /** Nodes changed while a full reconcile runs here: re-checked after it (it may have read them before the change). */
  let touchedDuringAll: Set<string> | undefined;
  const nodeChains = new Map<string, Promise<ReconcileNodeOutcome>>();
  const nodeRetries = new Map<string, { attempt: number; timer?: NodeJS.Timeout }>();

  const backoff = (attempt: number): number => Math.min(retryMaxMs, retryBaseMs * 2 ** Math.max(0, attempt - 1));

  const clientOrSkip = (): EmqxManagementClient | string => {
    if (domainProblem) return `invalid PU_DOMAIN: ${domainProblem}`;
    const client = getClient();
    if (!client) {
      if (!warnedNoClient) {
        warnedNoClient = true;
        logger.warn('no EMQX management API (PU_EMQX_API_KEY/SECRET): pipe rules are not managed; the ingest must use the go-compatible intake');
      }
      return 'no EMQX management API configured';
    }
    return client;
  };

  async function readEnabledNodes(): Promise<string[]> {
    if (!featureEnabled) return [];
    const { rows } = await opts.pg.query<{ uuid: string }>(ENABLED_PIPE_NODES_SQL);
    return rows.map((row) => row.uuid);
  }

  function scheduleNodeRetry(nodeUuid: string): void {
    if (closed) return;
    const state = nodeRetries.get(nodeUuid) ?? { attempt: 0 };
    if (state.timer) return;
    state.attempt += 1;
    const delay = backoff(state.attempt);
    state.timer = setTimeout(() => {
      state.timer = undefined;
      void reconcileNode(nodeUuid);
    }, delay);
    state.timer.unref();
    nodeRetries.set(nodeUuid, state);
    logger.info({ node: nodeUuid, attempt: state.attempt, delayMs: delay }, 'pipe rule change will be retried');
  }

  async function reconcileNodeNow(nodeUuid: string): Promise<ReconcileNodeOutcome> {
    const client = clientOrSkip();
    if (typeof client === 'string') return 'skipped';
    try {
      let enabled = false;
      if (featureEnabled) {
        const { rows } = await opts.pg.query<{ enabled: boolean }>(NODE_SQL, [nodeUuid]);
        enabled = rows[0]?.enabled === true;
      }
      const outcome = await reconcilePipeNode(client, { domain: opts.domain, nodeUuid, enabled }, { logger });
      const retry = nodeRetries.get(nodeUuid);
      if (retry) {
        if (retry.timer) clearTimeout(retry.timer);
        nodeRetries.delete(nodeUuid);
      }
      logger.debug({ node: nodeUuid, outcome }, 'pipe rule reconciled');
      return outcome;
    } catch (error) {
      logger.warn({ err: message(error), node: nodeUuid }, 'pipe rule change failed');
      scheduleNodeRetry(nodeUuid);
      return 'failed';
    }
  }

  function reconcileNode(nodeUuid: string): Promise<ReconcileNodeOutcome> {
    if (typeof nodeUuid !== 'string' || !isUuid(nodeUuid)) {
      logger.warn({ node: nodeUuid }, 'pipe rule change for an invalid node uuid ignored');
      return Promise.resolve('skipped');
    }
    const uuid = nodeUuid.toLowerCase();
    if (closed) return Promise.resolve('skipped');
    touchedDuringAll?.add(uuid);
    const previous = nodeChains.get(uuid) ?? Promise.resolve<ReconcileNodeOutcome>('unchanged');
    const next = previous.then(() => reconcileNodeNow(uuid));
    nodeChains.set(uuid, next);
    void next.finally(() => {
      if (nodeChains.get(uuid) === next) nodeChains.delete(uuid);
    });
    return next;
  }

  function scheduleAllRetry(): void {
    if (closed || allRetry) return;
    allFailures += 1;
    const delay = intervalMs > 0 ? Math.min(backoff(allFailures), intervalMs) : backoff(allFailures);
    allRetry = setTimeout(() => {
      allRetry = undefined;
      void reconcileAll();
    }, delay);
    allRetry.unref();
  }

  async function runAll(): Promise<ReconcileAllOutcome> {
    const client = clientOrSkip();
    if (typeof client === 'string') return { status: 'skipped', reason: client };
    let lockClient: PoolClient | undefined;
    let locked = false;
    touchedDuringAll = new Set();
    try {
      lockClient = await opts.pg.connect();
      const { rows } = await lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...PIPE_RULES_LOCK_KEY]);
      locked = rows[0]?.locked === true;
      if (!locked) {
        logger.debug('pipe rules: another replica is reconciling; skipped');
        return { status: 'skipped', reason: 'another replica holds the reconcile lock' };
      }
      // Postgres is read after EMQX is listed (see reconcileRules), so a rule created for a
      // change made meanwhile is not deleted as stray.
      const result = await reconcilePipeRules(client, { domain: opts.domain, enabledNodes: readEnabledNodes }, { concurrency: opts.concurrency, logger });
      allFailures = 0;
      return { status: 'done', result };
    } catch (error) {
      const result = error instanceof RuleReconcileError ? error.result : undefined;
      logger.warn({ err: message(error), failed: result?.failed.length }, 'pipe rules reconcile failed; retrying');
      scheduleAllRetry();
      return result ? { status: 'failed', error: message(error), result } : { status: 'failed', error: message(error) };
    } finally {
      if (lockClient) {
        if (locked) await lockClient.query('SELECT pg_advisory_unlock($1, $2)', [...PIPE_RULES_LOCK_KEY]).catch(() => undefined);
        lockClient.release();
      }
      const touched = touchedDuringAll;
      touchedDuringAll = undefined;
      for (const uuid of touched) void reconcileNode(uuid);
    }
  }

  const allRuns = serialRunner(runAll);
  function reconcileAll(): Promise<ReconcileAllOutcome> {
    if (closed) return Promise.resolve({ status: 'skipped', reason: 'closed' });
    return allRuns.run();
  }

  if (intervalMs > 0) {
    periodic = setInterval(() => void reconcileAll(), intervalMs);
    periodic.unref();
  }
  const initialDelayMs = opts.initialDelayMs ?? 1000;
  if (initialDelayMs >= 0) {
    initial = setTimeout(() => void reconcileAll(), initialDelayMs);
    initial.unref();
  }
  logger.debug({ prefix: PIPE_RULE_PREFIX, intervalMs, enabled: featureEnabled }, 'pipe rules reconciler started');

  return {
    reconcileAll,
    reconcileNode,
    async close() {
      closed = true;
      for (const timer of [periodic, initial, allRetry]) if (timer) clearTimeout(timer);
      for (const retry of nodeRetries.values()) if (retry.timer) clearTimeout(retry.timer);
      nodeRetries.clear();
      await allRuns.idle();
      await Promise.allSettled([...nodeChains.values()]);
    },
  };
}

export interface RegisterPipeRulesOptions extends Partial<Omit<PipeRulesOptions, 'client'>> {
  readonly client: PipeRulesOptions['client'];
  /** How long a policy-change listener waits for its rule before letting the request finish (default 2000 ms). */
  readonly listenerWaitMs?: number;
}

/**
 * Wires the reconciler into the app: Postgres from `app.pg`, domain and feature flag from
 * `app.config`, logs to `app.log`, and every `app.datapipe` change reconciles that node's rule
 * (waiting up to `listenerWaitMs` so the rule is usually in place when the request returns).
 * Call `close()` on shutdown (it is also hooked to `app.close()` when registered before start).
 */
export function registerPipeRules(app: FastifyInstance, opts: RegisterPipeRulesOptions): PipeRules {
  const pipeRules = createPipeRules({
    pg: app.pg,
    domain: app.config.domain,
    enabled: app.config.featureFlags.datapipe,
    logger: app.deps.logger,
    ...opts,
  });
  const listenerWaitMs = opts.listenerWaitMs ?? 2000;
  // Registered by the plugin that depends on `pepeunit-datapipe-events`, so `app.datapipe` exists.
  const unsubscribe = app.datapipe.onChange(async (event) => {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, listenerWaitMs);
      timer.unref();
    });
    await Promise.race([pipeRules.reconcileNode(event.nodeUuid), waited]);
    clearTimeout(timer);
  });
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      unsubscribe?.();
      await pipeRules.close();
    })();
    return closing;
  };
  try {
    app.addHook('onClose', async () => close());
  } catch {
    // The app already started: the caller closes it (plugins/background/pipe-rules.ts, on app close).
  }
  return { reconcileAll: pipeRules.reconcileAll, reconcileNode: pipeRules.reconcileNode, close };
}
