// Aggregation windows are part of the shared DataPipe contract (the backend's CSV import uses them too).
export { aggregationWindow } from '@pepeunit/common/datapipe';
export type { AggregationWindowBounds } from '@pepeunit/common/datapipe';
