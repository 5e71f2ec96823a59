import assert from 'node:assert/strict';
import { checkDataPipeYaml } from '@pepeunit/common/datapipe/index';
import { compileNodeConfig, type CompiledNodeConfig } from '@pepeunit/ingest-go-compatible/pipeline/index';

/** YAML -> validated -> stored JSON -> compiled, the way a config reaches the ingest. */
export function compileYaml(yaml: string): CompiledNodeConfig {
  const checked = checkDataPipeYaml(yaml, { maxPayloadSizeKb: 256 });
  if (!checked.ok) assert.fail(JSON.stringify(checked.errors));
  const compiled = compileNodeConfig(checked.json);
  if (!compiled.ok) assert.fail(compiled.error);
  return compiled.compiled;
}

/** A config from stage snippets (flow YAML), with harmless defaults for the rest. */
export function compileStages(parts: { active?: string; filters?: string; transformations?: string; policy?: string; dataSource?: string }): CompiledNodeConfig {
  const lines = [
    `active_period: ${parts.active ?? '{type: Permanent}'}`,
    `filters: ${parts.filters ?? '{type_input_value: Text, max_rate: 0, max_size: 0}'}`,
    parts.transformations ? `transformations: ${parts.transformations}` : '',
    `processing_policy: ${parts.policy ?? '{policy_type: LastValue}'}`,
    parts.dataSource ? `data_source: ${parts.dataSource}` : '',
  ];
  return compileYaml(`${lines.filter(Boolean).join('\n')}\n`);
}

export const T0 = Date.parse('2026-01-01T00:00:00Z');
