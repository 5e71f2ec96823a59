import { Type, type TSchema } from '@sinclair/typebox';

export const Uuid = Type.String({ format: 'uuid' });
export const DateTime = Type.String({ format: 'date-time' });
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const OrderBy = Type.Union([Type.Literal('asc'), Type.Literal('desc')]);
export const Visibility = Type.Union([Type.Literal('Public'), Type.Literal('Internal'), Type.Literal('Private')]);
export const Detail = Type.Object({ detail: Type.Unknown() });
export const UuidParams = Type.Object({ uuid: Uuid });

/** `offset` / `limit` as in the reference: limit 0 (or absent) means unlimited, max PU_MAX_PAGINATION_SIZE. */
export const Pagination = {
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 0 })),
};

/** Converts a timestamp column (naive UTC) to the reference's ISO form without offset. */
export function isoNaive(value: Date | string | null): string | null {
  if (value === null) return null;
  const d = value instanceof Date ? value : new Date(value);
  return d.toISOString().replace('Z', '');
}
