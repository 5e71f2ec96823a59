/**
 * `schema_example.json` validation (the reference `is_valid_schema_file`, §6.7) and the
 * per-unit `schema.json` generation (§2.1) with the topic builders of @pepeunit/common.
 */
import { Destination, systemTopic, unitNodeTopic, type BaseDestination } from '@pepeunit/common';
import { GitRepoError } from '../errors.js';

export interface SchemaExample {
  input_base_topic: string[];
  output_base_topic: string[];
  input_topic: string[];
  output_topic: string[];
}

export const SCHEMA_KEYS = [Destination.InputBase, Destination.OutputBase, Destination.Input, Destination.Output] as const;

/** Reference limit: a topic name must be shorter than 65535 - 100 characters. */
const MAX_TOPIC_LENGTH = 65535 - 100;

/**
 * Validates a parsed `schema_example.json` with the reference's rules and messages: the four
 * keys present, every value a list, only PU_AVAILABLE_TOPIC_SYMBOLS characters, names shorter
 * than 65435 characters. Ours on top: list items must be strings. Duplicate names within one
 * list are collapsed (one node per name).
 */
export function validateSchemaExample(raw: unknown, topicSymbols: string): SchemaExample {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new GitRepoError('This schema file has unresolved IO and base IO keys');
  }
  const dict = raw as Record<string, unknown>;
  if (!SCHEMA_KEYS.every((key) => key in dict)) throw new GitRepoError('This schema file has unresolved IO and base IO keys');
  if (!Object.values(dict).every((value) => Array.isArray(value))) {
    throw new GitRepoError('This schema file has not available value types, only list is available');
  }
  const allowed = new RegExp(`^[${topicSymbols.replace(/[\]\\^]/g, '\\$&')}]*$`);
  let longest = 0;
  for (const value of Object.values(dict) as unknown[][]) {
    for (const item of value) {
      if (typeof item !== 'string') throw new GitRepoError('This schema file has not available value types, topics must be strings');
      if (!allowed.test(item)) {
        throw new GitRepoError(`Topics in the schema use characters that are not allowed, allowed: ${topicSymbols}`);
      }
      longest = Math.max(longest, item.length);
    }
  }
  if (longest >= MAX_TOPIC_LENGTH) throw new GitRepoError(`The length ${longest} of the topic title is too long, max: ${MAX_TOPIC_LENGTH}`);
  const unique = (list: unknown): string[] => [...new Set(list as string[])];
  return {
    input_base_topic: unique(dict.input_base_topic),
    output_base_topic: unique(dict.output_base_topic),
    input_topic: unique(dict.input_topic),
    output_topic: unique(dict.output_topic),
  };
}

export interface SchemaNode {
  uuid: string;
  type: string;
  topic_name: string;
}

export interface SchemaEdge {
  node_input_uuid: string;
  node_output_uuid: string;
  output_topic_name: string;
}

export type CurrentSchema = Record<(typeof SCHEMA_KEYS)[number], Record<string, string[]>>;

/**
 * schema.json of a unit: each topic name of the target `schema_example.json` mapped to its
 * physical topics. Base topics → `<domain>/<destination>/<unit>/<name>`; input topics → the
 * node's own topic followed by the topics of every Output node linked to it; output topics →
 * the node's own topic. A name without a node (the unit is not synced to the target version
 * yet) maps to an empty list instead of failing.
 */
export function buildCurrentSchema(
  domain: string,
  unitUuid: string,
  schema: SchemaExample,
  nodes: readonly SchemaNode[],
  edges: readonly SchemaEdge[],
): CurrentSchema {
  const inputs = new Map<string, SchemaNode>();
  const outputs = new Map<string, SchemaNode>();
  for (const node of nodes) (node.type === 'Input' ? inputs : outputs).set(node.topic_name, node);
  const linked = new Map<string, string[]>();
  for (const edge of edges) {
    const list = linked.get(edge.node_input_uuid) ?? [];
    list.push(unitNodeTopic(domain, edge.node_output_uuid, edge.output_topic_name));
    linked.set(edge.node_input_uuid, list);
  }
  const base = (destination: BaseDestination, names: string[]): Record<string, string[]> =>
    Object.fromEntries(names.map((name) => [name, [baseTopic(domain, destination, unitUuid, name)]]));
  return {
    input_base_topic: base(Destination.InputBase, schema.input_base_topic),
    output_base_topic: base(Destination.OutputBase, schema.output_base_topic),
    input_topic: Object.fromEntries(
      schema.input_topic.map((name) => {
        const node = inputs.get(name);
        return [name, node ? [unitNodeTopic(domain, node.uuid, name), ...(linked.get(node.uuid) ?? [])] : []];
      }),
    ),
    output_topic: Object.fromEntries(
      schema.output_topic.map((name) => {
        const node = outputs.get(name);
        return [name, node ? [unitNodeTopic(domain, node.uuid, name)] : []];
      }),
    ),
  };
}

/**
 * `<domain>/<destination>/<unit>/<name>`: the schema name already ends with `/pepeunit`
 * (e.g. `update/pepeunit`), so `systemTopic` is used with the name's purpose when it has that
 * shape; any other name is appended verbatim, as the reference does.
 */
function baseTopic(domain: string, destination: BaseDestination, unitUuid: string, name: string): string {
  const match = /^([^/]+)\/pepeunit$/.exec(name);
  if (match) return systemTopic(domain, destination, unitUuid, match[1]!);
  return `${domain}/${destination}/${unitUuid}/${name}`;
}

/** Input base topic of a command for a unit (`…/input_base_topic/<unit>/<purpose>/pepeunit`). */
export function commandTopic(domain: string, unitUuid: string, purpose: string): string {
  return systemTopic(domain, Destination.InputBase, unitUuid, purpose);
}
