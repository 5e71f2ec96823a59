// The embedded broker's rule engine: the rule table (what EMQX keeps in cluster.hocon), the
// topic index, per-rule metrics, and the runtime that applies rules to every publish
// (reference/emqx-5.md §2, §3, §4.2, §8.2):
//
// - a publish finds its rules through the topic index (cost independent of the rule count),
//   cached per topic; disabled rules are skipped and not counted; `$SYS/` topics are ignored
//   (`rule_engine.ignore_sys_message = true`); events (`$events/...`) use the same index;
// - per rule: `matched`++, SELECT + WHERE (FOREACH: per element INCASE + DO)
//   (`failed.exception` / `failed.no_result`), `passed`++, then each action for each output
//   (`actions.*`; an HTTP action counts its success or failure when the request completes);
// - a rule that cannot fail and has no actions (a counter such as `SELECT clientid FROM "t"`)
//   only needs its two counters: `beginPublish` bumps them without building the message's
//   columns, so counting rules on every unit topic cost a cached lookup per publish;
// - `republish` renders its templates against the SELECT output and publishes through the broker
//   (so shared subscriptions and other rules see it, unless `direct_dispatch`); a message a rule
//   republished never re-triggers that same rule's republish ("recursive_republish_detected");
// - every create/update resets the rule's metrics, as EMQX does;
// - connectors and actions (bridges.ts) are kept with the rules, as EMQX keeps both in its
//   cluster config.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { toRfc3339Millis } from '../../emqx-values.js';
import type { RuleInfo, RuleMetrics, RuleMetricsValues } from '../../emqx-types.js';
import { silentLogger } from '../../logger.js';
import type { Logger } from '../../logger.js';
import { topicMatches } from '../access/topic-match.js';
import { ApiError, badRequest, notFound } from '../api-error.js';
import { ActionValidationError, checkAction, checkFromEntry, compileAction } from './actions.js';
import type { CompiledAction, StoredAction } from './actions.js';
import type { SelectStatement } from './ast.js';
import { Bridges } from './bridges.js';
import { RuleCounterStore } from './rule-counters.js';
import { checkStatement, evaluateStatement } from './evaluator.js';
import type { Columns } from './evaluator.js';
import { EmptyFromError, SqlSyntaxError, UnsupportedSqlError, parseRuleSql } from './parser.js';
import { renderTemplate, singleVar, lookupPath } from './templates.js';
import type { TemplatePart } from './templates.js';
import { TopicIndex } from './topic-index.js';
import { RuleRuntimeError } from './values.js';
import type { Value } from './values.js';

/** What the engine needs from a publish (the broker's `message.publish` hook payload). */
export interface RulePublishEvent {
  id: string;
  clientid: string;
  username: string | null;
  peerhost: string;
  topic: string;
  qos: number;
  flags: { retain: boolean; dup: boolean };
  payload: Buffer;
  publish_received_at: number;
  client_attrs: Record<string, string>;
  /** Set on messages published by a rule's republish action (EMQX header `republish_by`). */
  republish_by?: string;
}

/** A message a republish action sends. */
export interface RepublishMessage {
  ruleId: string;
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** Deliver to subscribers without running the `message.publish` hook (no rules fire). */
  directDispatch: boolean;
}

export interface RuleEngineOptions {
  nodeName: string;
  logger?: Logger;
  /** Publishes a republished message through the broker. */
  republish(message: RepublishMessage): void;
  /** Keeps the rules across restarts (JSON; writes are coalesced). */
  stateFile?: string;
}

interface StoredRule {
  id: string;
  name: string;
  sql: string;
  enable: boolean;
  description: string;
  actions: StoredAction[];
  createdAt: number;
  lastModifiedAt: number;
}

interface Metrics {
  /** The rule's counters in the engine's `RuleCounterStore`. */
  slot: number;
  lastSampleMatched: number;
  rate: number;
  rateMax: number;
  samples: number[];
}

interface LiveRule {
  stored: StoredRule;
  from: string[];
  statement: SelectStatement;
  actions: CompiledAction[];
  seq: number;
  metrics: Metrics;
  /** No actions and a statement that always passes: only `matched` and `passed` change. */
  counterOnly: boolean;
}

/** The enabled rules of one topic (publish or event), split by what running them needs. */
interface TopicRules {
  /** Counter slots of the rules needing nothing of the message (counters). */
  counterSlots: number[];
  /** Rules evaluated against the message's columns, in creation order. */
  evaluated: LiveRule[];
}

/** Rules of a publish still to run once the message's columns exist (see `beginPublish`). */
export interface PendingRules {
  readonly rules: readonly LiveRule[];
}

const NO_RULES: TopicRules = Object.freeze({ counterSlots: [], evaluated: [] }) as unknown as TopicRules;
/** Distinct topics whose rule lists are cached (cleared when full and on every rule change). */
const MAX_CACHED_TOPICS = 100_000;

const RULE_ID = /^[A-Za-z0-9]+[A-Za-z0-9_-]*$/;
const BODY_KEYS = new Set(['id', 'sql', 'actions', 'enable', 'name', 'description', 'metadata']);
/** Read-only fields of a RuleInfo (and what EMQX strips), ignored in a body so GET -> PUT round-trips. */
const IGNORED_KEYS = new Set(['status', 'node_status', 'metrics', 'node_metrics', 'node', 'from', 'created_at', 'last_modified_at']);
const SAMPLE_INTERVAL_MS = 10_000;
const SAMPLES_5M = 30;
/** Republish chains deeper than this are cut (EMQX only stops a rule re-triggering itself). */
const MAX_REPUBLISH_DEPTH = 16;
const STATE_VERSION = 2;

function newMetrics(slot: number): Metrics {
  return { slot, lastSampleMatched: 0, rate: 0, rateMax: 0, samples: [] };
}

/** A 400 in the shape EMQX's config check produces for a rule. */
function ruleValidationError(id: string, field: string, reason: string, extra: Record<string, unknown> = {}): ApiError {
  return badRequest(JSON.stringify({ kind: 'validation_error', path: `rule_engine.rules.${id}.${field}`, reason, ...extra }));
}

export function ruleNotFound(): ApiError {
  return notFound('NOT_FOUND', 'Rule Id Not Found');
}

/**
 * True for a rule that only counts: no actions, no WHERE, no FOREACH, and fields that are
 * columns or constants (reading them cannot fail), so every match passes.
 */
function isCounterOnly(statement: SelectStatement, actions: readonly StoredAction[]): boolean {
  if (actions.length > 0 || statement.where || statement.foreach) return false;
  return statement.fields.every((field) => field.kind === 'star' || field.expr.kind === 'var' || field.expr.kind === 'const');
}

/** Parses and checks a rule's SQL; the statement plus its FROM list, or a reason. */
export function compileRuleSql(sql: string): { statement: SelectStatement; from: string[] } | { error: string } {
  let statement: SelectStatement;
  try {
    statement = parseRuleSql(sql);
    checkStatement(statement);
  } catch (error) {
    if (error instanceof SqlSyntaxError || error instanceof UnsupportedSqlError || error instanceof EmptyFromError) return { error: error.message };
    throw error;
  }
  for (const entry of statement.from) {
    const problem = checkFromEntry(entry);
    if (problem) return { error: problem };
  }
  return { statement, from: [...new Set(statement.from)] };
}

export class RuleEngine {
  private readonly rules = new Map<string, LiveRule>();
  private readonly index = new TopicIndex<string>();
  /**
   * Per-topic rule lists. The most common entry, exactly one counting rule (every unit topic
   * with `cnt-` rules), is stored as its counter slot itself: one memory access less per publish.
   */
  private readonly topicRules = new Map<string, TopicRules | number>();
  private readonly eventRules = new Map<string, TopicRules>();
  private rulesVersion = 0;
  private readonly counters = new RuleCounterStore();
  /** Enabled rules per event topic (`$events/...`), so an event no rule reads costs one lookup in a tiny map. */
  private readonly eventRuleCount = new Map<string, number>();
  /** Connectors and actions (`/api/v5/connectors`, `/api/v5/actions`). */
  readonly bridges: Bridges;
  private readonly logger: Logger;
  private readonly sampler: NodeJS.Timeout;
  private seq = 0;
  private depth = 0;
  private currentWrite: Promise<void> | undefined;
  private nextWrite: Promise<void> | undefined;

  private constructor(private readonly options: RuleEngineOptions) {
    this.logger = options.logger ?? silentLogger;
    this.bridges = new Bridges(options.nodeName, this.logger);
    this.sampler = setInterval(() => this.sampleRates(), SAMPLE_INTERVAL_MS);
    this.sampler.unref();
  }

  static async open(options: RuleEngineOptions): Promise<RuleEngine> {
    const engine = new RuleEngine(options);
    if (options.stateFile) {
      const state = await readStateFile(options.stateFile);
      try {
        engine.bridges.load(state);
      } catch (error) {
        clearInterval(engine.sampler);
        const reason = error instanceof ApiError ? error.message : (error as Error).message;
        throw new Error(`Connectors/actions in ${options.stateFile} are invalid (${reason}); fix or delete the file`);
      }
      const loaded = state.rules;
      for (const stored of loaded) {
        const compiled = compileRuleSql(stored.sql);
        if ('error' in compiled) {
          clearInterval(engine.sampler);
          throw new Error(`Rule ${stored.id} in ${options.stateFile} is invalid (${compiled.error}); fix or delete the file`);
        }
        engine.install(stored, compiled);
      }
      if (loaded.length > 0) engine.logger.info({ rules: loaded.length, stateFile: options.stateFile }, 'embedded rule engine: rules loaded');
    }
    return engine;
  }

  get size(): number {
    return this.rules.size;
  }

  // ---- rule table -----------------------------------------------------------------------

  list(): RuleInfo[] {
    return [...this.rules.values()].sort((a, b) => a.seq - b.seq).map((rule) => this.info(rule));
  }

  /** Rules matching the list filters of `GET /rules`. */
  filter(query: { enable?: boolean; from?: string; like_id?: string; like_from?: string; like_description?: string; match_from?: string }): RuleInfo[] {
    const result: LiveRule[] = [];
    for (const rule of this.rules.values()) {
      const { stored, from } = rule;
      if (query.enable !== undefined && stored.enable !== query.enable) continue;
      if (query.from !== undefined && !from.includes(query.from)) continue;
      if (query.like_id !== undefined && !stored.id.includes(query.like_id)) continue;
      if (query.like_from !== undefined && !from.some((entry) => entry.includes(query.like_from as string))) continue;
      if (query.like_description !== undefined && !stored.description.includes(query.like_description)) continue;
      if (query.match_from !== undefined && !from.some((entry) => topicMatches(query.match_from as string, entry))) continue;
      result.push(rule);
    }
    return result.sort((a, b) => a.seq - b.seq).map((rule) => this.info(rule));
  }

  get(id: string): RuleInfo | undefined {
    const rule = this.rules.get(id);
    return rule ? this.info(rule) : undefined;
  }

  /** `POST /rules`: 400 for a bad body or an existing id. */
  async create(body: unknown): Promise<RuleInfo> {
    const record = checkBodyShape(body);
    let id: string;
    if (record.id === undefined) {
      do id = randomBytes(4).toString('hex');
      while (this.rules.has(id));
    } else {
      id = checkRuleId(record.id);
    }
    if (this.rules.has(id)) throw badRequest('rule id already exists');
    const now = Date.now();
    const { stored, compiled } = buildRule(id, record, undefined, now);
    const rule = this.install(stored, compiled);
    this.logger.info({ rule: id }, 'rule created');
    await this.persist();
    return this.info(rule);
  }

  /** `PUT /rules/{id}`: merges the body into the stored rule, creating it when missing (EMQX upsert). */
  async upsert(id: string, body: unknown): Promise<RuleInfo> {
    checkRuleId(id);
    const record = checkBodyShape(body);
    const existing = this.rules.get(id);
    const now = Date.now();
    const { stored, compiled } = buildRule(id, record, existing?.stored, now);
    if (existing) this.uninstall(existing);
    const rule = this.install(stored, compiled, existing?.seq);
    this.logger.debug({ rule: id, created: !existing }, 'rule updated');
    await this.persist();
    return this.info(rule);
  }

  /** `DELETE /rules/{id}`: false when it did not exist. */
  async remove(id: string): Promise<boolean> {
    const rule = this.rules.get(id);
    if (!rule) return false;
    this.uninstall(rule);
    this.logger.debug({ rule: id }, 'rule deleted');
    await this.persist();
    return true;
  }

  metrics(id: string): RuleMetrics | undefined {
    const rule = this.rules.get(id);
    if (!rule) return undefined;
    const values = this.metricsValues(rule.metrics);
    return { id, metrics: values, node_metrics: [{ node: this.options.nodeName, metrics: { ...values } }] };
  }

  resetMetrics(id: string): boolean {
    const rule = this.rules.get(id);
    if (!rule) return false;
    this.counters.reset(rule.metrics.slot);
    // A new object: replies of asynchronous actions sent before the reset are not counted.
    rule.metrics = newMetrics(rule.metrics.slot);
    return true;
  }

  // ---- runtime --------------------------------------------------------------------------

  /**
   * Whether a publish on `topic` could fire an enabled rule (cheap: no event is built).
   */
  wants(topic: string): boolean {
    if (topic.startsWith('$SYS/')) return false;
    const rules = this.topicRulesOf(topic);
    return typeof rules === 'number' || rules.counterSlots.length > 0 || rules.evaluated.length > 0;
  }

  /**
   * First half of a publish: counts the counter-only rules of `topic` and returns the rules
   * that need the message's columns, or undefined when there are none (then the broker need
   * not build the message at all). `topicCache` is a per-topic slot the caller already looked up
   * (the fast path's route cache): the engine keeps the topic's rules there, so a publish costs
   * no lookup of its own. Never throws.
   */
  beginPublish(topic: string, topicCache?: { hookVersion: number; hookState: unknown }): PendingRules | undefined {
    if (this.rules.size === 0 || topic.startsWith('$SYS/')) return undefined;
    let rules: TopicRules | number;
    if (topicCache && topicCache.hookVersion === this.rulesVersion) rules = topicCache.hookState as TopicRules | number;
    else {
      rules = this.topicRulesOf(topic);
      if (topicCache) {
        topicCache.hookVersion = this.rulesVersion;
        topicCache.hookState = rules;
      }
    }
    if (typeof rules === 'number') {
      this.counters.countPassedOne(rules);
      return undefined;
    }
    if (rules.counterSlots.length > 0) this.counters.countPassed(rules.counterSlots);
    return rules.evaluated.length === 0 ? undefined : { rules: rules.evaluated };
  }

  /**
   * Applies every enabled rule whose FROM matches the published topic; with `pending` (from
   * `beginPublish` for the same topic) only the rules still to run. Never throws.
   */
  handlePublish(message: RulePublishEvent, pending?: PendingRules): void {
    const rules = pending ?? this.beginPublish(message.topic);
    if (!rules) return;
    this.applyAll(rules.rules, this.columnsOf(message), message.republish_by);
  }

  /** Whether some enabled rule selects the event topic (`$events/...`). */
  wantsEvent(eventTopic: string): boolean {
    return this.eventRuleCount.size > 0 && (this.eventRuleCount.get(eventTopic) ?? 0) > 0;
  }

  /** Runs the rules of an event; `columns` is called only when a rule needs them. Never throws. */
  handleEvent(eventTopic: string, columns: () => Columns): void {
    if (!this.wantsEvent(eventTopic)) return;
    // Event topics are few: their own small cache, away from the (large) per-topic one.
    let rules = this.eventRules.get(eventTopic);
    if (!rules) {
      rules = this.matchRules(eventTopic);
      this.eventRules.set(eventTopic, rules);
    }
    if (rules.counterSlots.length > 0) this.counters.countPassed(rules.counterSlots);
    if (rules.evaluated.length === 0) return;
    let built: Columns;
    try {
      built = columns();
    } catch (error) {
      this.logger.error({ err: error, event: eventTopic }, 'event columns could not be built');
      return;
    }
    this.applyAll(rules.evaluated, built, undefined);
  }

  private applyAll(rules: readonly LiveRule[], base: Columns, republishedBy: string | undefined): void {
    for (const rule of rules) {
      try {
        // Each rule sees its own `metadata`; a fresh object, so outputs of earlier rules keep theirs.
        base.metadata = { rule_id: rule.stored.id };
        this.applyRule(rule, base, republishedBy);
      } catch (error) {
        this.logger.error({ err: error, rule: rule.stored.id }, 'rule evaluation failed unexpectedly');
      }
    }
  }

  /** The enabled rules whose FROM matches `topic`, from the per-topic cache. */
  private topicRulesOf(topic: string): TopicRules | number {
    const cached = this.topicRules.get(topic);
    if (cached !== undefined) return cached;
    const result = this.matchRules(topic);
    const entry = result.evaluated.length === 0 && result.counterSlots.length === 1 ? (result.counterSlots[0] as number) : result;
    if (this.topicRules.size >= MAX_CACHED_TOPICS) this.topicRules.clear();
    this.topicRules.set(topic, entry);
    return entry;
  }

  private matchRules(topic: string): TopicRules {
    let result = NO_RULES;
    const ids = this.index.match(topic);
    if (ids.size > 0) {
      const matching: LiveRule[] = [];
      for (const id of ids) {
        const rule = this.rules.get(id);
        if (rule && rule.stored.enable) matching.push(rule);
      }
      if (matching.length > 0) {
        matching.sort((a, b) => a.seq - b.seq);
        result = { counterSlots: matching.filter((rule) => rule.counterOnly).map((rule) => rule.metrics.slot), evaluated: matching.filter((rule) => !rule.counterOnly) };
      }
    }
    return result;
  }

  /** Rule, action and connector counters for `/api/v5/prometheus/data_integration`. */
  dataIntegrationSnapshot(): {
    /** `counters` in `RULE_COUNTERS` order (rule-counters.ts). */
    rules: Array<{ id: string; enable: boolean; counters: Float64Array; actionCount: number }>;
    actions: ReturnType<Bridges['actionSnapshots']>;
    connectors: ReturnType<Bridges['connectorSnapshots']>;
  } {
    const rules = [...this.rules.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((rule) => ({ id: rule.stored.id, enable: rule.stored.enable, counters: this.counters.snapshot(rule.metrics.slot), actionCount: rule.actions.length }));
    return { rules, actions: this.bridges.actionSnapshots(), connectors: this.bridges.connectorSnapshots() };
  }

  /** Rule ids whose actions reference `ref` (e.g. `http:pu-alerts`). */
  rulesUsingAction(ref: string): string[] {
    const result: string[] = [];
    for (const rule of this.rules.values()) if (rule.stored.actions.some((action) => action === ref)) result.push(rule.stored.id);
    return result;
  }

  /**
   * `DELETE /actions/{id}`: 400 while rules reference it, unless `alsoDeleteDeps` (the
   * reference is then removed from those rules, which keep their metrics).
   */
  async deleteAction(id: string, alsoDeleteDeps: boolean): Promise<void> {
    this.bridges.requireAction(id);
    const users = this.rulesUsingAction(id);
    if (users.length > 0 && !alsoDeleteDeps) {
      throw badRequest(JSON.stringify({ reason: 'Cannot delete action while active rules are dependent on it', rules: users }));
    }
    for (const ruleId of users) {
      const rule = this.rules.get(ruleId) as LiveRule;
      rule.stored = { ...rule.stored, actions: rule.stored.actions.filter((action) => action !== id), lastModifiedAt: Date.now() };
      rule.actions = rule.stored.actions.map((action) => compileAction(action));
      rule.counterOnly = isCounterOnly(rule.statement, rule.stored.actions);
    }
    this.clearRuleCaches();
    this.bridges.deleteAction(id);
    await this.persist();
  }

  /** Persists after a connector/action change made through `bridges`. */
  async saveBridges(): Promise<void> {
    await this.persist();
  }

  /** `POST /rule_test` for `message_publish` contexts: 200 output, 412 no match, 400 errors. */
  testSql(body: unknown): Record<string, Value> | Array<Record<string, Value>> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('Invalid json message received');
    const { sql, context = {} } = body as { sql?: unknown; context?: unknown };
    if (typeof sql !== 'string') throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'sql', reason: 'required_field' }));
    if (typeof context !== 'object' || context === null || Array.isArray(context)) throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'context', reason: 'expected an object' }));
    const ctx = context as Record<string, unknown>;
    const eventType = ctx.event_type ?? 'message_publish';
    if (eventType !== 'message_publish') throw badRequest(`event_type ${String(eventType)}: only message_publish is supported by the embedded rule engine`);
    const compiled = compileRuleSql(sql);
    if ('error' in compiled) throw badRequest(compiled.error);
    const now = Date.now();
    const columns: Columns = {
      id: randomBytes(8).toString('hex'),
      clientid: typeof ctx.clientid === 'string' ? ctx.clientid : 'c_emqx',
      username: typeof ctx.username === 'string' ? ctx.username : 'u_emqx',
      payload: typeof ctx.payload === 'string' ? ctx.payload : '{"msg": "hello"}',
      topic: typeof ctx.topic === 'string' ? ctx.topic : 't/a',
      qos: typeof ctx.qos === 'number' ? ctx.qos : 1,
      flags: { retain: false, dup: false },
      pub_props: {},
      peerhost: typeof ctx.peerhost === 'string' ? ctx.peerhost : '127.0.0.1',
      publish_received_at: typeof ctx.publish_received_at === 'number' ? ctx.publish_received_at : now,
      timestamp: now,
      node: this.options.nodeName,
      event: 'message.publish',
      client_attrs: {},
      metadata: { rule_id: '' },
    };
    const topic = columns.topic as string;
    if (!compiled.from.some((filter) => topicMatches(topic, filter))) throw new ApiError(412, 'NOT_MATCH', 'SQL Not Match');
    let result;
    try {
      result = evaluateStatement(compiled.statement, columns);
    } catch (error) {
      if (error instanceof RuleRuntimeError) throw badRequest(JSON.stringify({ select_and_transform_error: error.message }));
      throw error;
    }
    if (result.outcome === 'no_result') throw new ApiError(412, 'NOT_MATCH', 'SQL Not Match');
    return compiled.statement.foreach ? result.outputs : result.selected;
  }

  async close(): Promise<void> {
    clearInterval(this.sampler);
    await this.bridges.close();
    await this.nextWrite;
    await this.currentWrite;
  }

  // ---- internals ------------------------------------------------------------------------

  private info(rule: LiveRule): RuleInfo {
    const { stored } = rule;
    return {
      id: stored.id,
      name: stored.name,
      sql: stored.sql,
      enable: stored.enable,
      description: stored.description,
      from: [...rule.from],
      actions: structuredClone(stored.actions) as RuleInfo['actions'],
      created_at: toRfc3339Millis(stored.createdAt),
      last_modified_at: toRfc3339Millis(stored.lastModifiedAt),
    };
  }

  private install(stored: StoredRule, compiled: { statement: SelectStatement; from: string[] }, seq?: number): LiveRule {
    const rule: LiveRule = {
      stored,
      from: compiled.from,
      statement: compiled.statement,
      actions: stored.actions.map((action) => compileAction(action)),
      seq: seq ?? (this.seq += 1),
      metrics: newMetrics(this.counters.allocate()),
      counterOnly: isCounterOnly(compiled.statement, stored.actions),
    };
    this.rules.set(stored.id, rule);
    for (const filter of rule.from) this.index.insert(filter, stored.id);
    this.countEventRules(rule, 1);
    this.clearRuleCaches();
    return rule;
  }

  private clearRuleCaches(): void {
    this.topicRules.clear();
    this.eventRules.clear();
    // Invalidates what callers keep in their own per-topic slots (`beginPublish`).
    this.rulesVersion += 1;
  }

  private countEventRules(rule: LiveRule, change: 1 | -1): void {
    if (!rule.stored.enable) return;
    for (const filter of rule.from) {
      if (!filter.startsWith('$events/')) continue;
      const count = (this.eventRuleCount.get(filter) ?? 0) + change;
      if (count > 0) this.eventRuleCount.set(filter, count);
      else this.eventRuleCount.delete(filter);
    }
  }

  private metricsValues(metrics: Metrics): RuleMetricsValues {
    const last5m = metrics.samples.length === 0 ? 0 : metrics.samples.reduce((sum, value) => sum + value, 0) / metrics.samples.length;
    const round = (value: number): number => Math.round(value * 100) / 100;
    return { ...this.counters.values(metrics.slot), 'matched.rate': round(metrics.rate), 'matched.rate.max': round(metrics.rateMax), 'matched.rate.last5m': round(last5m) };
  }

  private uninstall(rule: LiveRule): void {
    for (const filter of rule.from) this.index.remove(filter, rule.stored.id);
    this.rules.delete(rule.stored.id);
    this.countEventRules(rule, -1);
    this.counters.release(rule.metrics.slot);
    this.clearRuleCaches();
  }

  private columnsOf(message: RulePublishEvent): Columns {
    return {
      id: message.id,
      clientid: message.clientid,
      username: message.username ?? undefined,
      payload: message.payload.toString('utf8'),
      topic: message.topic,
      qos: message.qos,
      flags: { ...message.flags },
      pub_props: {},
      peerhost: message.peerhost,
      publish_received_at: message.publish_received_at,
      timestamp: Date.now(),
      node: this.options.nodeName,
      event: 'message.publish',
      client_attrs: { ...message.client_attrs },
    };
  }

  private applyRule(rule: LiveRule, columns: Columns, republishedBy: string | undefined): void {
    // No per-call closures here: this runs for every message a non-counting rule selects.
    const slot = rule.metrics.slot;
    const counters = this.counters;
    counters.add(slot, 'matched');
    let result;
    try {
      result = evaluateStatement(rule.statement, columns);
    } catch (error) {
      counters.add(slot, 'failed');
      counters.add(slot, 'failed.exception');
      this.logger.debug({ rule: rule.stored.id, err: error instanceof Error ? error.message : String(error) }, 'rule SQL failed for a message');
      return;
    }
    if (result.outcome === 'no_result') {
      counters.add(slot, 'failed');
      counters.add(slot, 'failed.no_result');
      return;
    }
    counters.add(slot, 'passed');
    for (const output of result.outputs) {
      for (const action of rule.actions) {
        counters.add(slot, 'actions.total');
        const outcome = this.runAction(rule, action, output, republishedBy);
        if (outcome === 'success') counters.add(slot, 'actions.success');
        else if (outcome === 'discarded') counters.add(slot, 'actions.discarded');
        else if (outcome === 'out_of_service') {
          counters.add(slot, 'actions.failed');
          counters.add(slot, 'actions.failed.out_of_service');
        } else if (outcome === 'failed') {
          counters.add(slot, 'actions.failed');
          counters.add(slot, 'actions.failed.unknown');
        }
        // 'pending': counted when the asynchronous action replies.
      }
    }
  }

  private runAction(
    rule: LiveRule,
    action: CompiledAction,
    selected: Record<string, Value>,
    republishedBy: string | undefined,
  ): 'success' | 'failed' | 'discarded' | 'out_of_service' | 'pending' {
    const ruleId = rule.stored.id;
    switch (action.kind) {
      case 'connector': {
        const metrics = rule.metrics;
        const sent = this.bridges.send(action.ref, selected, (outcome) => {
          // The rule may have been replaced or reset meanwhile; its new metrics start from zero.
          if (this.rules.get(ruleId)?.metrics !== metrics) return;
          if (outcome === 'success') this.counters.add(metrics.slot, 'actions.success');
          else {
            this.counters.add(metrics.slot, 'actions.failed');
            this.counters.add(metrics.slot, 'actions.failed.unknown');
          }
        });
        // EMQX: references to actions that do not exist are discarded; a stopped action is out of service.
        if (sent === 'not_found') return 'discarded';
        if (sent === 'stopped') return 'out_of_service';
        return 'pending';
      }
      case 'console':
        this.logger.info({ rule: ruleId, selected }, 'rule console action');
        return 'success';
      case 'republish': {
        if (republishedBy === ruleId) {
          // EMQX logs the error and does nothing; the action itself returns ok.
          this.logger.error({ rule: ruleId, topic: selected.topic }, 'recursive_republish_detected');
          return 'success';
        }
        if (this.depth >= MAX_REPUBLISH_DEPTH) {
          this.logger.error({ rule: ruleId }, `republish chain deeper than ${MAX_REPUBLISH_DEPTH} rules stopped`);
          return 'failed';
        }
        const topic = renderTemplate(action.topic, selected);
        if (topic === '' || /[+#]/.test(topic) || topic.includes('\u0000') || topic.startsWith('$share/') || topic.startsWith('$queue/')) {
          this.logger.warn({ rule: ruleId, topic }, 'republish topic is not a valid topic name');
          return 'failed';
        }
        const payload = Buffer.from(renderTemplate(action.payload, selected), 'utf8');
        const qosValue = simpleValue(action.qos, selected, 0);
        const qos = qosValue === 1 || qosValue === 2 ? qosValue : 0;
        const retain = simpleValue(action.retain, selected, false) === true;
        const directDispatch = simpleValue(action.directDispatch, selected, false) === true;
        this.depth += 1;
        try {
          this.options.republish({ ruleId, topic, payload, qos, retain, directDispatch });
        } catch (error) {
          this.logger.warn({ rule: ruleId, err: error instanceof Error ? error.message : String(error) }, 'republish failed');
          return 'failed';
        } finally {
          this.depth -= 1;
        }
        return 'success';
      }
    }
  }

  private sampleRates(): void {
    for (const rule of this.rules.values()) {
      const metrics = rule.metrics;
      const matched = this.counters.get(metrics.slot, 'matched');
      metrics.rate = Math.max(0, matched - metrics.lastSampleMatched) / (SAMPLE_INTERVAL_MS / 1000);
      metrics.lastSampleMatched = matched;
      metrics.rateMax = Math.max(metrics.rateMax, metrics.rate);
      metrics.samples.push(metrics.rate);
      if (metrics.samples.length > SAMPLES_5M) metrics.samples.shift();
    }
  }

  /**
   * Writes the rule table; concurrent changes share one write (the write that starts next
   * includes every change made before it starts), so bulk updates do not rewrite the file once
   * per rule.
   */
  private persist(): Promise<void> {
    const file = this.options.stateFile;
    if (!file) return Promise.resolve();
    if (this.nextWrite) return this.nextWrite;
    const previous = this.currentWrite ?? Promise.resolve();
    const next = previous.then(async () => {
      this.nextWrite = undefined;
      this.currentWrite = next;
      const rules = [...this.rules.values()].sort((a, b) => a.seq - b.seq).map((rule) => rule.stored);
      const text = `${JSON.stringify({ version: STATE_VERSION, rules, ...this.bridges.snapshot() })}\n`;
      try {
        await mkdir(dirname(file), { recursive: true });
        const temporary = `${file}.${process.pid}.tmp`;
        await writeFile(temporary, text, { mode: 0o600 });
        await rename(temporary, file);
      } catch (error) {
        this.logger.error({ err: error, stateFile: file }, 'could not write the rule engine state file');
      }
    });
    this.nextWrite = next;
    return next;
  }
}

function simpleValue(value: number | boolean | TemplatePart[], selected: Record<string, Value>, fallback: Value): Value {
  if (!Array.isArray(value)) return value;
  const path = singleVar(value);
  if (path) {
    const found = lookupPath(selected, path);
    return found === undefined ? fallback : found;
  }
  const rendered = renderTemplate(value, selected);
  if (rendered === 'true') return true;
  if (rendered === 'false') return false;
  return /^\d+$/.test(rendered) ? Number(rendered) : fallback;
}

function checkRuleId(id: unknown): string {
  if (typeof id !== 'string') throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'id', reason: 'expected a string' }));
  if (id === '') throw badRequest('empty rule id is not allowed');
  if (id.length > 255 || !RULE_ID.test(id)) {
    throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'rule_engine.rules', reason: 'invalid_map_key', value: id, expected: '^[A-Za-z0-9]+[A-Za-z0-9-_]*$, at most 255 characters' }));
  }
  return id;
}

function checkBodyShape(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('Invalid json message received');
  const record: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    if (IGNORED_KEYS.has(key)) continue;
    if (!BODY_KEYS.has(key)) throw badRequest(JSON.stringify({ kind: 'validation_error', path: key, reason: 'unknown_fields' }));
    record[key] = value;
  }
  return record;
}

function buildRule(id: string, record: Record<string, unknown>, existing: StoredRule | undefined, now: number): { stored: StoredRule; compiled: { statement: SelectStatement; from: string[] } } {
  const sql = record.sql ?? existing?.sql;
  if (typeof sql !== 'string') throw ruleValidationError(id, 'sql', sql === undefined ? 'required_field' : 'expected a string');
  const compiled = compileRuleSql(sql);
  if ('error' in compiled) throw ruleValidationError(id, 'sql', compiled.error, { value: sql });
  const actionsInput = record.actions ?? existing?.actions ?? [];
  if (!Array.isArray(actionsInput)) throw ruleValidationError(id, 'actions', 'expected an array');
  let actions: StoredAction[];
  try {
    actions = actionsInput.map((action, index) => checkAction(action, `actions[${index}]`));
  } catch (error) {
    if (error instanceof ActionValidationError) throw ruleValidationError(id, error.path, error.reason);
    throw error;
  }
  const enable = record.enable ?? existing?.enable ?? true;
  if (typeof enable !== 'boolean') throw ruleValidationError(id, 'enable', 'expected a boolean');
  const name = record.name ?? existing?.name ?? '';
  if (typeof name !== 'string') throw ruleValidationError(id, 'name', 'expected a string');
  const description = record.description ?? existing?.description ?? '';
  if (typeof description !== 'string') throw ruleValidationError(id, 'description', 'expected a string');
  const stored: StoredRule = { id, name, sql, enable, description, actions, createdAt: existing?.createdAt ?? now, lastModifiedAt: now };
  return { stored, compiled };
}

/** The state file: rules plus connectors and actions (version 1 files hold rules only). */
async function readStateFile(file: string): Promise<{ rules: StoredRule[]; connectors?: unknown; actions?: unknown }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { rules: [] };
    throw new Error(`Cannot read rule engine state file ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as { version?: number; rules?: StoredRule[]; connectors?: unknown; actions?: unknown };
    if ((parsed.version !== 1 && parsed.version !== STATE_VERSION) || !Array.isArray(parsed.rules)) throw new Error(`unsupported version ${String(parsed.version)}`);
    const rules = parsed.rules.map((rule) => {
      const record = checkBodyShape({ sql: rule.sql, actions: rule.actions, enable: rule.enable, name: rule.name, description: rule.description });
      const id = checkRuleId(rule.id);
      const { stored } = buildRule(id, record, undefined, Date.now());
      return { ...stored, createdAt: Number(rule.createdAt) || stored.createdAt, lastModifiedAt: Number(rule.lastModifiedAt) || stored.lastModifiedAt };
    });
    return { rules, connectors: parsed.connectors, actions: parsed.actions };
  } catch (error) {
    const reason = error instanceof ApiError ? error.message : (error as Error).message;
    throw new Error(`Rule engine state file ${file} is invalid (${reason}); fix or delete it`);
  }
}
