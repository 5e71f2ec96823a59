import { Type, type TLiteral, type TNull, type TSchema, type TUnion } from '@sinclair/typebox';

// Response serialisation (fast-json-stringify) runs a validator per value to pick the branch of
// an `anyOf`; plain `type`/`enum` schemas it writes directly (issue 11: REST speed). The two
// helpers below keep TypeBox's static types (a union) and emit the plain form; validation is the
// same.

/** A string from a fixed set: `{type: 'string', enum}`, typed as the union of its literals. */
type Literals<T extends readonly string[]> = { -readonly [K in keyof T]: TLiteral<T[K] & string> };
export const StringEnum = <const T extends readonly string[]>(values: T): TUnion<Literals<T>> =>
  ({ type: 'string', enum: [...values] }) as unknown as TUnion<Literals<T>>;

const PRIMITIVE = new Set(['string', 'number', 'integer', 'boolean']);
/** The schema or null: `{..., type: [<type>, 'null']}` for primitive schemas, else a union with null. */
export const Nullable = <T extends TSchema>(schema: T): TUnion<[T, TNull]> => {
  const type = (schema as { type?: unknown }).type;
  if (typeof type !== 'string' || !PRIMITIVE.has(type)) return Type.Union([schema, Type.Null()]);
  const enumValues = (schema as { enum?: unknown[] }).enum;
  return { ...schema, type: [type, 'null'], ...(enumValues ? { enum: [...enumValues, null] } : {}) } as unknown as TUnion<[T, TNull]>;
};

export const Uuid = Type.String({ format: 'uuid' });
export const DateTime = Type.String({ format: 'date-time' });
export const OrderBy = StringEnum(['asc', 'desc']);
export const Visibility = StringEnum(['Public', 'Internal', 'Private']);
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
