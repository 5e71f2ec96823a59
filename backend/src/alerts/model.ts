/**
 * Alert vocabulary shared by the webhook, the intake, the sender and the REST routes.
 *
 * Unit log levels are the device spellings of the reference (`Debug` … `Critical`, matched
 * case-insensitively); platform alerts (`app.alertSink`) use `info` … `critical`. Both map onto one
 * ordered scale so a unit's minimum level can be compared with either.
 */
import type { AlertLevel as SinkLevel, AlertRecipient, PlatformAlert } from '../domain/alert-sink.js';

export const UNIT_LOG_LEVELS = ['Debug', 'Info', 'Warning', 'Error', 'Critical'] as const;
export type UnitLogLevel = (typeof UNIT_LOG_LEVELS)[number];

/** `error`, `ERROR`, `Error` → `Error`; anything else → undefined. */
export function normaliseLevel(value: unknown): UnitLogLevel | undefined {
  if (typeof value !== 'string') return undefined;
  const lower = value.toLowerCase();
  return UNIT_LOG_LEVELS.find((level) => level.toLowerCase() === lower);
}

export function levelRank(level: UnitLogLevel): number {
  return UNIT_LOG_LEVELS.indexOf(level);
}

export function sinkLevelToUnitLevel(level: SinkLevel): UnitLogLevel {
  return level === 'info' ? 'Info' : level === 'warning' ? 'Warning' : level === 'error' ? 'Error' : 'Critical';
}

/** Who receives an alert: a user, the admins, or the creator of the unit it is about. */
export type Recipient = AlertRecipient | { kind: 'unitCreator' };

/** One alert on its way into the outbox (`alert_events`). */
export interface IncomingAlert {
  readonly recipient: Recipient;
  /** Dotted origin: `unit.log`, `broker.authz_deny`, `broker.disconnect_storm`, `load.cutoff`, ... */
  readonly source: string;
  readonly level: UnitLogLevel;
  readonly unitUuid?: string;
  readonly text: string;
  /** Alerts with equal keys (per recipient, unit and level) merge into one "+N more" line. */
  readonly key?: string;
  /** When it happened (default: now). */
  readonly at?: Date;
}

/** Longest alert text stored (longer texts are cut with an ellipsis). */
export const MAX_ALERT_TEXT = 1000;

export function fromPlatformAlert(alert: PlatformAlert): IncomingAlert {
  return {
    recipient: alert.recipient,
    source: alert.source,
    level: sinkLevelToUnitLevel(alert.level),
    ...(alert.unitUuid ? { unitUuid: alert.unitUuid } : {}),
    text: alert.text,
    ...(alert.key ? { key: alert.key } : {}),
  };
}

export type AlertState = 'pending' | 'sent' | 'muted' | 'no_chat' | 'failed';
