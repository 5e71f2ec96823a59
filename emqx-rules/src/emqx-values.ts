// Parsers for the HOCON value formats EMQX uses in its API bodies: durations ("5s", "10m",
// "1h30m"), byte sizes ("256KB", "1MB") and rates ("30/s", "1MB/s", "100/10s", "infinity").
// One implementation serves the controller (semantic comparison, option validation) and the
// embedded broker (body validation), so both agree on what a valid value is.

const DURATION_UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;

/** Milliseconds for an EMQX duration ("5s", "100ms", "1h30m"); integers are taken as ms. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim().toLowerCase();
  if (text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  DURATION_PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = DURATION_PART.exec(text)) !== null) {
    const amount = Number(match[1]);
    const unit = DURATION_UNIT_MS[match[2] ?? ''];
    if (unit === undefined) return undefined;
    total += amount * unit;
    consumed = DURATION_PART.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? Math.round(total) : undefined;
}

const SIZE_UNIT: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1024,
  mb: 1024 ** 2,
  gb: 1024 ** 3,
};

/** Bytes for an EMQX byte size ("256KB", "1MB", "4096"); integers are taken as bytes. */
export function parseByteSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = SIZE_UNIT[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(match[1]) * unit);
}

/** A rate normalised to "units per second"; `Infinity` for "infinity". */
export function parseRate(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text.toLowerCase() === 'infinity') return Number.POSITIVE_INFINITY;
  const slash = text.indexOf('/');
  if (slash <= 0) return undefined;
  const amount = parseByteSize(text.slice(0, slash));
  let period = text.slice(slash + 1).trim().toLowerCase();
  if (amount === undefined || period === '') return undefined;
  if (/^[a-z]+$/.test(period)) period = `1${period}`;
  const periodMs = parseDuration(period);
  if (periodMs === undefined || periodMs <= 0) return undefined;
  return (amount * 1000) / periodMs;
}

export function isRate(value: unknown): boolean {
  return parseRate(value) !== undefined;
}

/** "2026-01-01T00:00:00+00:00" in the style EMQX prints timestamps (second precision, UTC). */
export function toRfc3339Seconds(epochMs: number): string {
  return new Date(Math.floor(epochMs / 1000) * 1000).toISOString().replace('.000Z', '+00:00');
}

/** "2026-01-01T00:00:00.123+00:00" (millisecond precision, UTC), as EMQX prints client times. */
export function toRfc3339Millis(epochMs: number): string {
  return new Date(epochMs).toISOString().replace('Z', '+00:00');
}

/** Epoch milliseconds from an RFC 3339 string or epoch seconds (number or digit string). */
export function parseEpochSecondsOrRfc3339(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.round(value * 1000) : undefined;
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}
