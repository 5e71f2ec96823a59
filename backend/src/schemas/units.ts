import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Nullable, Pagination, OrderBy, Visibility } from './common.js';
import { UnitNodeRead, UnitNodeTypeSchema } from './unit-nodes.js';

/** `target_firmware_platform`, branches and commits are free text checked against the repository. */
const Text = (maxLength: number) => Type.String({ maxLength });

export const UnitCreate = Type.Object(
  {
    repo_uuid: Uuid,
    visibility_level: Visibility,
    name: Text(256),
    is_auto_update_from_repo_unit: Type.Boolean(),
    target_firmware_platform: Type.Optional(Nullable(Text(256))),
    repo_branch: Type.Optional(Nullable(Text(256))),
    repo_commit: Type.Optional(Nullable(Text(256))),
  },
  { additionalProperties: false },
);
export type UnitCreate = Static<typeof UnitCreate>;

/** Every field of UnitCreate except repo_uuid, all optional; null means "keep". */
export const UnitUpdate = Type.Object(
  {
    visibility_level: Type.Optional(Nullable(Visibility)),
    name: Type.Optional(Nullable(Text(256))),
    is_auto_update_from_repo_unit: Type.Optional(Nullable(Type.Boolean())),
    target_firmware_platform: Type.Optional(Nullable(Text(256))),
    repo_branch: Type.Optional(Nullable(Text(256))),
    repo_commit: Type.Optional(Nullable(Text(256))),
  },
  { additionalProperties: false },
);
export type UnitUpdate = Static<typeof UnitUpdate>;

/** The last reserved state keys a unit reported (§2.3), parsed from `units.unit_state_dict`. */
export const UnitState = Type.Object(
  {
    ifconfig: Type.Optional(Type.Unknown()),
    millis: Type.Optional(Type.Unknown()),
    mem_free: Type.Optional(Type.Unknown()),
    mem_alloc: Type.Optional(Type.Unknown()),
    freq: Type.Optional(Type.Unknown()),
    statvfs: Type.Optional(Type.Unknown()),
    pu_commit_version: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);

/** UnitRead of the reference (pepeunit-backend.md §5.5); encrypted columns are never returned. */
export const UnitRead = Type.Object({
  uuid: Uuid,
  visibility_level: Type.String(),
  name: Type.String(),
  create_datetime: Type.String(),
  is_auto_update_from_repo_unit: Type.Boolean(),
  target_firmware_platform: Nullable(Type.String()),
  repo_branch: Nullable(Type.String()),
  repo_commit: Nullable(Type.String()),
  unit_state: Nullable(UnitState),
  current_commit_version: Nullable(Type.String()),
  last_update_datetime: Type.String(),
  creator_uuid: Nullable(Uuid),
  repo_uuid: Nullable(Uuid),
  firmware_update_status: Nullable(Type.String()),
  firmware_update_error: Nullable(Type.String()),
  last_firmware_update_datetime: Nullable(Type.String()),
  unit_nodes: Type.Array(UnitNodeRead),
});
export type UnitRead = Static<typeof UnitRead>;

export const UnitsResult = Type.Object({ count: Type.Integer(), units: Type.Array(UnitRead) });

export const UnitsQuery = Type.Object({
  uuids: Type.Optional(Type.Array(Uuid, { maxItems: 500 })),
  creator_uuid: Type.Optional(Uuid),
  repo_uuid: Type.Optional(Uuid),
  repos_uuids: Type.Optional(Type.Array(Uuid, { maxItems: 500 })),
  search_string: Type.Optional(Type.String({ maxLength: 256 })),
  is_auto_update_from_repo_unit: Type.Optional(Type.Boolean()),
  visibility_level: Type.Optional(Type.Array(Visibility)),
  order_by_unit_name: Type.Optional(OrderBy),
  order_by_create_date: Type.Optional(OrderBy),
  order_by_last_update: Type.Optional(OrderBy),
  is_include_output_unit_nodes: Type.Optional(Type.Boolean()),
  /** Only with is_include_output_unit_nodes: units owning Output nodes linked to this Input node. */
  unit_node_input_uuid: Type.Optional(Uuid),
  /** Only with is_include_output_unit_nodes and without unit_node_input_uuid. */
  unit_node_type: Type.Optional(Type.Array(UnitNodeTypeSchema)),
  /** Only with is_include_output_unit_nodes and without unit_node_input_uuid: units owning one of these nodes. */
  unit_node_uuids: Type.Optional(Type.Array(Uuid, { maxItems: 500 })),
  ...Pagination,
});
export type UnitsQuery = Static<typeof UnitsQuery>;

export const EnvJsonString = Type.Object({ env_json_string: Type.String({ maxLength: 1_000_000 }) }, { additionalProperties: false });
export type EnvJsonString = Static<typeof EnvJsonString>;

export const StateStorage = Type.Object({ state: Type.String() }, { additionalProperties: false });
export type StateStorage = Static<typeof StateStorage>;

export const TargetVersionRead = Type.Object({ commit: Type.String(), tag: Nullable(Type.String()) });
export type TargetVersionRead = Static<typeof TargetVersionRead>;

export const BackendTopicCommand = Type.Union([
  Type.Literal('Update'),
  Type.Literal('EnvUpdate'),
  Type.Literal('SchemaUpdate'),
  Type.Literal('LogSync'),
]);
export type BackendTopicCommand = Static<typeof BackendTopicCommand>;
export const CommandQuery = Type.Object({ command: BackendTopicCommand });

/** Reference defaults wbits=9, level=9; ranges are checked by the service (UnitError, like the reference). */
export const TgzQuery = Type.Object({
  wbits: Type.Optional(Type.Integer({ minimum: -1000, maximum: 1000, default: 9 })),
  level: Type.Optional(Type.Integer({ minimum: -1000, maximum: 1000, default: 9 })),
});
export type TgzQuery = Static<typeof TgzQuery>;

/** env.json / schema.json documents (free-form objects). */
export const JsonDocument = Type.Record(Type.String(), Type.Unknown());
