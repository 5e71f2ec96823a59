/**
 * Active period (§3.2): strict comparisons against the receive time, as the Go service.
 * (The reference's CSV import uses inclusive bounds; the live pipe does not.)
 */
import { ActivePeriodType, parseConfigDateTimeText, type ActivePeriodConfig } from '@pepeunit/common/datapipe/index';

export interface CompiledActivePeriod {
  type: ActivePeriodType;
  /** Epoch ms (microsecond precision as a fraction), or null when unset. */
  startMs: number | null;
  endMs: number | null;
}

function toMs(text: string | null): number | null {
  if (text === null) return null;
  const parsed = parseConfigDateTimeText(text);
  if (!parsed.ok) throw new Error(`invalid datetime '${text}': ${parsed.message}`);
  return parsed.value.epochMs;
}

/** Throws on a datetime that is not ISO text (callers compile validated configs). */
export function compileActivePeriod(config: ActivePeriodConfig): CompiledActivePeriod {
  return { type: config.type, startMs: toMs(config.start), endMs: toMs(config.end) };
}

export function isActive(period: CompiledActivePeriod, nowMs: number): boolean {
  switch (period.type) {
    case ActivePeriodType.Permanent:
      return true;
    case ActivePeriodType.FromDate:
      return period.startMs !== null && nowMs > period.startMs;
    case ActivePeriodType.ToDate:
      return period.endMs !== null && nowMs < period.endMs;
    case ActivePeriodType.DateRange:
      return period.startMs !== null && period.endMs !== null && nowMs > period.startMs && nowMs < period.endMs;
    default:
      return false;
  }
}
