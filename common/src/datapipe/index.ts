/**
 * The DataPipe config document, shared by the backend and the ingest: types and enums,
 * YAML reading, validation with the reference's messages, the stored JSON form, the YAML
 * export, the default LastValue config and the `data_source.json_path` grammar.
 */
export * from './types.js';
export { ConfigDateTime, parseConfigDateTimeText, dateTimeFromTimestamp } from './datetime.js';
export type { DateTimeResult } from './datetime.js';
export { PyFloat, pythonFloatRepr, pythonJsonDumps, pythonJsonString, parsePythonJson } from './python-json.js';
export type { PyJsonValue } from './python-json.js';
export { parseDataPipeYaml, DEFAULT_YAML_MAX_BYTES, DEFAULT_YAML_MAX_ALIAS_COUNT } from './yaml-parse.js';
export type { ParseDataPipeYamlOptions, ParseDataPipeYamlResult } from './yaml-parse.js';
export { parseJsonPath } from './json-path.js';
export type { JsonPathSegment, JsonPathParseResult } from './json-path.js';
export {
  checkDataPipeConfig,
  validateDataPipeConfig,
  normaliseDataPipeConfig,
  DataPipeValidationError,
} from './validate.js';
export type { DataPipeValidationResult } from './validate.js';
export { serialiseDataPipeConfig, defaultLastValueConfig } from './serialise.js';
export { dataPipeConfigToYaml, pythonYamlDump, removeNulls } from './yaml-export.js';
export { checkDataPipeYaml } from './check-yaml.js';
export type { CheckDataPipeYamlResult } from './check-yaml.js';
export { aggregationWindow } from './window.js';
export type { AggregationWindowBounds } from './window.js';
