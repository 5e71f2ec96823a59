// `GET /api/v5/prometheus/data_integration` (EMQX 5.5+, `emqx_prometheus_data_integration`,
// wave2-integrations.md §4.2): every rule's, action's and connector's counters in one answer,
// as Prometheus text or as JSON. Metric names, label key (`id`) and the JSON layout are EMQX's;
// `all_nodes_unaggregated` adds a `node` label (one node here, so the other modes are equal).
import type { RuleEngine } from './engine.js';
import { RULE_COUNTERS } from './rule-counters.js';
import type { RuleCounter } from './rule-counters.js';

export type DataIntegrationMode = 'node' | 'all_nodes_aggregated' | 'all_nodes_unaggregated';
export const DATA_INTEGRATION_MODES: readonly DataIntegrationMode[] = ['node', 'all_nodes_aggregated', 'all_nodes_unaggregated'];

type Snapshot = ReturnType<RuleEngine['dataIntegrationSnapshot']>;
type Row = Record<string, string | number>;

const RULE_METRICS: ReadonlyArray<[string, 'gauge' | 'counter', string]> = [
  ['emqx_rule_enable', 'gauge', ''],
  ['emqx_rule_matched', 'counter', 'matched'],
  ['emqx_rule_failed', 'counter', 'failed'],
  ['emqx_rule_passed', 'counter', 'passed'],
  ['emqx_rule_failed_exception', 'counter', 'failed.exception'],
  ['emqx_rule_failed_no_result', 'counter', 'failed.no_result'],
  ['emqx_rule_actions_total', 'counter', 'actions.total'],
  ['emqx_rule_actions_success', 'counter', 'actions.success'],
  ['emqx_rule_actions_failed', 'counter', 'actions.failed'],
  ['emqx_rule_actions_failed_out_of_service', 'counter', 'actions.failed.out_of_service'],
  ['emqx_rule_actions_failed_unknown', 'counter', 'actions.failed.unknown'],
  ['emqx_rule_actions_discarded', 'counter', 'actions.discarded'],
];

/** Prometheus name -> index in a rule's counters. */
const RULE_COUNTER_INDEX: ReadonlyArray<[string, number]> = RULE_METRICS.filter(([, , key]) => key !== '').map(([name, , key]) => [name, RULE_COUNTERS.indexOf(key as RuleCounter)]);

const ACTION_METRICS: ReadonlyArray<[string, 'gauge' | 'counter', string]> = [
  ['emqx_action_enable', 'gauge', ''],
  ['emqx_action_status', 'gauge', ''],
  ['emqx_action_matched', 'counter', 'matched'],
  ['emqx_action_dropped', 'counter', 'dropped'],
  ['emqx_action_success', 'counter', 'success'],
  ['emqx_action_failed', 'counter', 'failed'],
  ['emqx_action_inflight', 'gauge', 'inflight'],
  ['emqx_action_received', 'counter', 'received'],
  ['emqx_action_late_reply', 'counter', 'late_reply'],
  ['emqx_action_retried', 'counter', 'retried'],
  ['emqx_action_retried_success', 'counter', 'retried.success'],
  ['emqx_action_retried_failed', 'counter', 'retried.failed'],
  ['emqx_action_dropped_resource_stopped', 'counter', 'dropped.resource_stopped'],
  ['emqx_action_dropped_resource_not_found', 'counter', 'dropped.resource_not_found'],
  ['emqx_action_dropped_queue_full', 'counter', 'dropped.queue_full'],
  ['emqx_action_dropped_other', 'counter', 'dropped.other'],
  ['emqx_action_dropped_expired', 'counter', 'dropped.expired'],
  ['emqx_action_queuing', 'gauge', 'queuing'],
];

const CONNECTOR_METRICS: ReadonlyArray<[string, 'gauge' | 'counter', string]> = [
  ['emqx_connector_enable', 'gauge', ''],
  ['emqx_connector_status', 'gauge', ''],
];

function rows(snapshot: Snapshot, node: string | undefined): { rules: Row[]; actions: Row[]; connectors: Row[]; overview: Row } {
  const withNode = (row: Row): Row => (node === undefined ? row : { ...row, node });
  const rules = snapshot.rules.map((rule) => {
    const row: Row = { id: rule.id, emqx_rule_enable: rule.enable ? 1 : 0 };
    for (const [name, index] of RULE_COUNTER_INDEX) row[name] = rule.counters[index] ?? 0;
    return withNode(row);
  });
  const actions = snapshot.actions.map((action) => {
    // Status numbers as `emqx_prometheus_cluster:status_to_number`: connected 1, otherwise 0.
    const row: Row = { id: action.id, emqx_action_enable: action.enable ? 1 : 0, emqx_action_status: action.running ? 1 : 0 };
    for (const [name, , key] of ACTION_METRICS) if (key !== '') row[name] = action.metrics[key] ?? 0;
    return withNode(row);
  });
  const connectors = snapshot.connectors.map((connector) => withNode({ id: connector.id, emqx_connector_enable: connector.enable ? 1 : 0, emqx_connector_status: connector.enable ? 1 : 0 }));
  // `emqx_actions_count` counts rule actions (the references in rules), as EMQX does.
  const overview: Row = {
    emqx_rules_count: snapshot.rules.length,
    emqx_actions_count: snapshot.rules.reduce((sum, rule) => sum + rule.actionCount, 0),
    emqx_connectors_count: snapshot.connectors.length,
  };
  return { rules, actions, connectors, overview };
}

/** The JSON answer (`Accept: application/json`). */
export function dataIntegrationJson(snapshot: Snapshot, mode: DataIntegrationMode, node: string): Record<string, unknown> {
  const data = rows(snapshot, mode === 'all_nodes_unaggregated' ? node : undefined);
  return { data_integration_overview: data.overview, rules: data.rules, actions: data.actions, connectors: data.connectors };
}

function labelValue(value: string): string {
  return /[\\\n"]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : value;
}

/** The Prometheus text exposition format (the default). */
export function dataIntegrationText(snapshot: Snapshot, mode: DataIntegrationMode, node: string): string {
  const data = rows(snapshot, mode === 'all_nodes_unaggregated' ? node : undefined);
  const lines: string[] = [];
  for (const [name, value] of Object.entries(data.overview)) lines.push(`# HELP ${name} `, `# TYPE ${name} gauge`, `${name} ${value}`);
  const families: Array<[ReadonlyArray<[string, 'gauge' | 'counter', string]>, Row[]]> = [
    [RULE_METRICS, data.rules],
    [ACTION_METRICS, data.actions],
    [CONNECTOR_METRICS, data.connectors],
  ];
  for (const [metrics, points] of families) {
    // Labels are rendered once per series, not once per metric.
    const labels = points.map((point) => (point.node === undefined ? `{id="${labelValue(String(point.id))}"} ` : `{node="${labelValue(String(point.node))}",id="${labelValue(String(point.id))}"} `));
    for (const [name, type] of metrics) {
      lines.push(`# HELP ${name} `, `# TYPE ${name} ${type}`);
      for (let index = 0; index < points.length; index += 1) lines.push(name + (labels[index] as string) + String((points[index] as Row)[name] ?? 0));
    }
  }
  return `${lines.join('\n')}\n`;
}
