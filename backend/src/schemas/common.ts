import { Type, type TSchema } from '@sinclair/typebox';

export const Uuid = Type.String({ format: 'uuid' });
export const DateTime = Type.String({ format: 'date-time' });
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const OrderBy = Type.Union([Type.Literal('asc'), Type.Literal('desc')]);
export const Visibility = Type.Union([Type.Literal('Public'), Type.Literal('Internal'), Type.Literal('Private')]);
export const Detail = Type.Object({ detail: Type.Unknown() });
export const UuidParams = Type.Object({ uuid: Uuid });

/**
 * The largest offset or limit accepted (a Postgres int4, also within ClickHouse's UInt32): larger
 * numbers are a 422 at the edge instead of an out-of-range error in a database (issue 10.8).
 */
export const MAX_PAGE_NUMBER = 2_147_483_647;
export const PageOffset = Type.Integer({ minimum: 0, maximum: MAX_PAGE_NUMBER });
export const PageLimit = Type.Integer({ minimum: 0, maximum: MAX_PAGE_NUMBER });

/** `offset` / `limit` as in the reference: limit 0 (or absent) means unlimited, max PU_MAX_PAGINATION_SIZE. */
export const Pagination = {
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PAGE_NUMBER, default: 0 })),
  limit: Type.Optional(PageLimit),
};

/** Converts a timestamp column (naive UTC) to the reference's ISO form without offset. */
export function isoNaive(value: Date | string | null): string | null {
  if (value === null) return null;
  const d = value instanceof Date ? value : new Date(value);
  return d.toISOString().replace('Z', '');
}
