// Rule SQL and rule bodies generated from platform data. Everything interpolated into SQL is
// validated, never escaped: EMQX's lexer has no escape sequences (reference/emqx-5.md §3.2), so a
// value containing a quote cannot be written safely and is refused.
//
// Lexical rules followed here (valid for EMQX 5.8's parser and the embedded engine alike):
// - topics in FROM are double-quoted (`"a/b/+"`) — a double-quoted token is a name, which is what
//   FROM expects;
// - string literals are single-quoted (`'x'`); a double-quoted "literal" would be a variable;
// - every computed output field is aliased (`publish_received_at AS ts`).
import { BACKEND_SUFFIX, ingestTopicTemplate, unitNodeTopic } from '@pepeunit/common/topics';
import type { RuleAction } from '../emqx-types.js';
import { PIPE_RULE_PREFIX, RuleGenerationError, pipeRuleId } from './catalogue.js';
import type { RuleSpec } from './catalogue.js';

// Characters never allowed in anything interpolated into rule SQL: quotes (no escaping exists),
// backslash, NUL and other control characters.
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /['"\\\u0000-\u001f\u007f]/;

/** Checks an MQTT topic filter for use in FROM; returns it double-quoted. */
export function quoteTopicFilter(filter: string): string {
  if (typeof filter !== 'string' || filter === '') throw new RuleGenerationError('a FROM topic filter must be a non-empty string');
  if (FORBIDDEN.test(filter)) throw new RuleGenerationError(`topic filter ${JSON.stringify(filter)} contains a quote, backslash or control character`);
  if (Buffer.byteLength(filter) > 65_535) throw new RuleGenerationError('topic filter is longer than 65535 bytes');
  const levels = filter.split('/');
  levels.forEach((level, index) => {
    if (level.includes('#') && !(level === '#' && index === levels.length - 1)) {
      throw new RuleGenerationError(`topic filter ${JSON.stringify(filter)}: '#' must be a whole level and the last one`);
    }
    if (level.includes('+') && level !== '+') throw new RuleGenerationError(`topic filter ${JSON.stringify(filter)}: '+' must be a whole level`);
  });
  if (filter.startsWith('$')) throw new RuleGenerationError(`topic filter ${JSON.stringify(filter)}: '$' topics (events, $SYS) are not generated here`);
  return `"${filter}"`;
}

/** A single-quoted SQL string literal; refuses values that would need escaping. */
export function sqlString(value: string): string {
  if (typeof value !== 'string' || FORBIDDEN.test(value)) throw new RuleGenerationError(`value ${JSON.stringify(value)} cannot be written as a rule SQL string (quotes, backslash or control characters)`);
  return `'${value}'`;
}

/**
 * The instance domain as the first topic level: non-empty, one level (no `/`), no wildcards,
 * quotes, backslash, whitespace or control characters, not starting with `$`.
 */
export function checkDomain(domain: string): string {
  if (typeof domain !== 'string' || domain === '') throw new RuleGenerationError('the domain (PU_DOMAIN) is empty');
  if (/[/+#\s]/.test(domain) || FORBIDDEN.test(domain)) {
    throw new RuleGenerationError(`domain ${JSON.stringify(domain)} cannot be a topic level (no '/', '+', '#', quotes, backslash, spaces or control characters)`);
  }
  if (domain.startsWith('$')) throw new RuleGenerationError(`domain ${JSON.stringify(domain)} must not start with '$'`);
  if (domain.length > 253) throw new RuleGenerationError('domain is longer than 253 characters');
  return domain;
}

/** The unit node topic a pipe rule reads: `<domain>/<node uuid>/pepeunit`. */
export function pipeSourceTopic(domain: string, nodeUuid: string): string {
  pipeRuleId(nodeUuid); // validates the uuid
  return unitNodeTopic(checkDomain(domain), nodeUuid.toLowerCase(), `/${BACKEND_SUFFIX}`);
}

/** `SELECT payload, topic, clientid, publish_received_at AS ts FROM "<domain>/<uuid>/pepeunit"` */
export function pipeRuleSql(domain: string, nodeUuid: string): string {
  return `SELECT payload, topic, clientid, publish_received_at AS ts FROM ${quoteTopicFilter(pipeSourceTopic(domain, nodeUuid))}`;
}

/**
 * The republish action of pipe rules: the whole SELECT output as a JSON envelope
 * `{"payload", "topic", "clientid", "ts"}` on `pepeunit_ingest/<original topic>`
 * (common/src/topics.ts, rules intake contract). QoS 0 like the Go DataPipe's subscription;
 * never retained; no user properties (an empty `user_properties` means none, where EMQX's
 * default `${user_properties}` would look up an unselected field); through normal routing so
 * shared subscriptions spread the load over ingest processes.
 */
export function pipeRepublishAction(): RuleAction {
  return {
    function: 'republish',
    args: {
      topic: ingestTopicTemplate(),
      qos: 0,
      retain: false,
      payload: '',
      mqtt_properties: {},
      user_properties: '',
      direct_dispatch: false,
    },
  };
}

export interface PipeRuleInput {
  domain: string;
  nodeUuid: string;
}

/** The `pipe-<uuid>` rule of a unit node with an enabled DataPipe policy. */
export function pipeRule(input: PipeRuleInput): RuleSpec {
  const id = pipeRuleId(input.nodeUuid);
  const uuid = id.slice(PIPE_RULE_PREFIX.length);
  return {
    id,
    sql: pipeRuleSql(input.domain, uuid),
    actions: [pipeRepublishAction()],
    enable: true,
    description: `Pepeunit DataPipe intake of unit node ${uuid}: forwards ${pipeSourceTopic(input.domain, uuid)} to the ingest (managed by the Pepeunit backend; edits are reverted)`,
  };
}

/** Pipe rules for many nodes (duplicates removed, sorted by id). */
export function pipeRules(domain: string, nodeUuids: Iterable<string>): RuleSpec[] {
  const byId = new Map<string, RuleSpec>();
  for (const nodeUuid of nodeUuids) {
    const rule = pipeRule({ domain, nodeUuid });
    byId.set(rule.id, rule);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
