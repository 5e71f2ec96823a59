/**
 * The per-message DataPipe pipeline (pure, no I/O) and the in-memory policy buffers.
 * Stages, one file each: active-period, filters, transformations, json-extract (our
 * data_source extension), window (aggregation alignment); go-number reproduces Go's
 * ParseFloat / %f / %.Nf; process combines them; compile turns stored JSON into the fast form.
 */
export { parseGoFloat, formatGoF, formatGoFixed } from './go-number.js';
export { aggregationWindow } from './window.js';
export type { AggregationWindowBounds } from './window.js';
export { createNodeState } from './node-state.js';
export type { NodeState } from './node-state.js';
export { compileActivePeriod, isActive } from './active-period.js';
export type { CompiledActivePeriod } from './active-period.js';
export { compileFilters, applyFilters } from './filters.js';
export type { CompiledFilters, FilterDropReason } from './filters.js';
export { compileTransformations, applyTransformations, sliceBounds, sliceUtf8Bytes } from './transformations.js';
export type { CompiledTransformations } from './transformations.js';
export { extractJsonValue } from './json-extract.js';
export type { JsonExtractResult } from './json-extract.js';
export { compileNodeConfig, compileValidatedConfig, stateTypeOf } from './compile.js';
export type { CompiledNodeConfig, CompiledPolicy, CompileResult } from './compile.js';
export { processMessage, DROP_REASONS } from './process.js';
export type { DropReason, ProcessResult } from './process.js';
export * from './buffers/index.js';
