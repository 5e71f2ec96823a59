/**
 * One message, synchronously, from the original topic to a policy buffer: topic -> node ->
 * compiled config -> pipeline (`processMessage`) -> the node's policy buffer, with a counter for
 * every outcome. Nothing here awaits: the writers drain the buffers in the background.
 */
import { parsePipeTopic } from '@pepeunit/common';
import { processMessage, type ProcessResult } from './pipeline/index.js';
import type { ConfigStore } from './config-store.js';
import type { IngestMetrics } from './metrics.js';
import type { IngestWriters } from './writers/index.js';

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
    const parsed = parsePipeTopic(topic);
    if (parsed === null) {
      metrics.dropped.bad_topic += 1;
      return;
    }
    const uuid = parsed.nodeUuid;
    metrics.countNode(uuid);
    if (payload.length > this.maxPayloadBytes) {
      metrics.dropped.payload_too_large += 1;
      return;
    }
    const entry = this.store.get(uuid);
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
