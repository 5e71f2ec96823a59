/**
 * The backend's two entry points in one call: YAML text in, either the validated config
 * with its stored JSON text, or the list of `{ stage, message }` (check mode answers 200
 * with the list; set mode answers 422 with `<n> validation errors for DataPipeConfig`).
 */
import { validateDataPipeConfig } from './validate.js';
import { serialiseDataPipeConfig } from './serialise.js';
import { parseDataPipeYaml, type ParseDataPipeYamlOptions } from './yaml-parse.js';
import type { DataPipeConfig, DataPipeValidationOptions, ValidationEntry } from './types.js';

export type CheckDataPipeYamlResult =
  | { ok: true; config: DataPipeConfig; json: string; errors: [] }
  | { ok: false; config: null; json: null; errors: ValidationEntry[] };

export function checkDataPipeYaml(
  text: string | Uint8Array,
  opts: DataPipeValidationOptions & ParseDataPipeYamlOptions,
): CheckDataPipeYamlResult {
  const parsed = parseDataPipeYaml(text, opts);
  if (!parsed.ok) return { ok: false, config: null, json: null, errors: [parsed.error] };
  const result = validateDataPipeConfig(parsed.document, opts);
  if (!result.config) return { ok: false, config: null, json: null, errors: result.errors };
  return { ok: true, config: result.config, json: serialiseDataPipeConfig(result.config), errors: [] };
}
