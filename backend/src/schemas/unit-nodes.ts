import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Nullable, Pagination, OrderBy, Visibility, StringEnum } from './common.js';

export const UnitNodeTypeSchema = StringEnum(['Input', 'Output']);

/** UnitNodeRead of the reference (pepeunit-backend.md §5.6). */
export const UnitNodeRead = Type.Object({
  uuid: Uuid,
  type: Type.String(),
  visibility_level: Type.String(),
  is_rewritable_input: Type.Boolean(),
  max_connections: Type.Integer(),
  topic_name: Type.String(),
  last_update_datetime: Type.String(),
  is_data_pipe_active: Type.Boolean(),
  data_pipe_yml: Nullable(Type.String()),
  data_pipe_status: Nullable(Type.String()),
  data_pipe_error: Nullable(Type.String()),
  create_datetime: Type.String(),
  state: Nullable(Type.String()),
  unit_uuid: Nullable(Uuid),
  creator_uuid: Nullable(Uuid),
});
export type UnitNodeRead = Static<typeof UnitNodeRead>;

export const UnitNodesResult = Type.Object({ count: Type.Integer(), unit_nodes: Type.Array(UnitNodeRead) });

export const UnitNodesQuery = Type.Object({
  uuids: Type.Optional(Type.Array(Uuid, { maxItems: 500 })),
  unit_uuid: Type.Optional(Uuid),
  search_string: Type.Optional(Type.String({ maxLength: 256 })),
  type: Type.Optional(Type.Array(UnitNodeTypeSchema)),
  visibility_level: Type.Optional(Type.Array(Visibility)),
  order_by_create_date: Type.Optional(OrderBy),
  /** Only Input nodes linked to this Output node. */
  output_uuid: Type.Optional(Uuid),
  ...Pagination,
});
export type UnitNodesQuery = Static<typeof UnitNodesQuery>;

export const UnitNodeUpdate = Type.Object(
  {
    visibility_level: Type.Optional(Nullable(Visibility)),
    is_rewritable_input: Type.Optional(Nullable(Type.Boolean())),
    is_data_pipe_active: Type.Optional(Nullable(Type.Boolean())),
    max_connections: Type.Optional(Nullable(Type.Integer({ minimum: -2147483648, maximum: 2147483647 }))),
  },
  { additionalProperties: false },
);
export type UnitNodeUpdate = Static<typeof UnitNodeUpdate>;

export const UnitNodeSetState = Type.Object({ state: Type.Optional(Nullable(Type.String())) }, { additionalProperties: false });
export type UnitNodeSetState = Static<typeof UnitNodeSetState>;

export const UnitNodeEdgeCreate = Type.Object({ node_output_uuid: Uuid, node_input_uuid: Uuid }, { additionalProperties: false });
export type UnitNodeEdgeCreate = Static<typeof UnitNodeEdgeCreate>;

export const UnitNodeEdgeRead = Type.Object({ uuid: Uuid, node_output_uuid: Uuid, node_input_uuid: Uuid });
export type UnitNodeEdgeRead = Static<typeof UnitNodeEdgeRead>;

export const UnitNodeEdgeDeleteQuery = Type.Object({ input_uuid: Uuid, output_uuid: Uuid });
export type UnitNodeEdgeDeleteQuery = Static<typeof UnitNodeEdgeDeleteQuery>;

export const UnitNodeEdgesResult = Type.Object({ count: Type.Integer(), unit_node_edges: Type.Array(UnitNodeEdgeRead) });
export type UnitNodeEdgesResult = Static<typeof UnitNodeEdgesResult>;

export const UnitUuidParams = Type.Object({ unit_uuid: Uuid });
