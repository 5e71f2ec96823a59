export * from './types.js';
export { LastValueBuffer } from './last-value.js';
export { NRecordsBuffer } from './n-records.js';
export type { NRecordsEntry } from './n-records.js';
export { TimeWindowBuffer } from './time-window.js';
export type { TimeWindowEntry } from './time-window.js';
export { AggregationBuffer, aggregateValue } from './aggregation.js';
export type { AggregationEntry, AggregationSnapshot, AggregationWindowState } from './aggregation.js';
