/**
 * One message, synchronously, from the original topic to a policy buffer: topic -> node ->
 * compiled config -> pipeline (`processMessage`) -> the node's policy buffer, with a counter for
 * every outcome. Nothing here awaits: the writers drain the buffers in the background.
 */
import { parsePipeTopic } from '@pepeunit/common';
import { processMessage, type ProcessResult } from './pipeline/index.js';
import type { ConfigStore, NodeEntry } from './config-store.js';
import type { IngestMetrics } from './metrics.js';
import type { IngestWriters } from './writers/index.js';

const PIPE_SUFFIX = '/pepeunit';

export class Dispatcher {
  constructor(
    private readonly store: ConfigStore,
    private readonly writers: IngestWriters,
    private readonly metrics: IngestMetrics,
    private readonly maxPayloadBytes: number,
  ) {}

  /** `topic` is the device's topic `<domain>/<node>/pepeunit`; `atMs` the message time. */
  handle(topic: string, payload: Buffer, atMs: number): void {
    const metrics = this.metrics;
    // Fast path: the canonical `<domain>/<36-char uuid>/pepeunit` of a configured node is one
    // map lookup (the store's keys are valid lower-case uuids, so no regex is needed); anything
    // else goes through the full parser (upper-case uuids, junk, unknown nodes).
    let entry: NodeEntry | undefined;
    let uuid: string;
    const first = topic.indexOf('/');
    if (first > 0 && topic.length === first + 46 && topic.endsWith(PIPE_SUFFIX) && (entry = this.store.get(topic.slice(first + 1, first + 37))) !== undefined) {
      uuid = entry.uuid;
      metrics.countNode(uuid);
    } else {
      const parsed = parsePipeTopic(topic);
      if (parsed === null) {
        metrics.dropped.bad_topic += 1;
        return;
      }
      uuid = parsed.nodeUuid;
      metrics.countNode(uuid);
      entry = this.store.get(uuid);
    }
    if (payload.length > this.maxPayloadBytes) {
      metrics.dropped.payload_too_large += 1;
      return;
    }
    if (entry === undefined) {
      metrics.dropped.unknown_node += 1;
      return;
    }
    const compiled = entry.compiled;
    const result: ProcessResult = processMessage(compiled, entry.state, payload, atMs);
    if (result.kind === 'drop') {
      metrics.dropped[result.reason] += 1;
      return;
    }
    const writers = this.writers;
    const policy = compiled.policy;
    switch (policy.type) {
      case 'LastValue':
        writers.lastValue.add(uuid, result.value, atMs);
        break;
      case 'NRecords':
        writers.nRecords.add({ unitNodeUuid: uuid, state: result.value, stateType: compiled.inputType, atMs, maxCount: policy.nRecordsCount });
        break;
      case 'TimeWindow':
        writers.timeWindow.add({ unitNodeUuid: uuid, state: result.value, stateType: compiled.inputType, atMs, timeWindowSize: policy.timeWindowSize });
        break;
      case 'Aggregation':
        if (
          writers.aggregation.add({
            unitNodeUuid: uuid,
            value: result.numeric as number,
            atMs,
            timeWindowSize: policy.timeWindowSize,
            aggregationFunction: policy.aggregationFunction,
          }) === 'late'
        ) {
          // Its window was already written (a late broker timestamp): never a second row.
          metrics.dropped.late_window += 1;
          return;
        }
        break;
    }
    metrics.accepted[policy.type] += 1;
    writers.afterAdd();
  }
}
