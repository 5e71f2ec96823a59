/**
 * The one way a backend component raises an alert for a person (issue 12 delivers it through
 * the throttled Telegram path; issue 13's cut-off and crash alerts and issue 14's billing
 * warnings call it). Until a delivery target is attached with `use`, alerts are logged at
 * warn level so nothing raised is silently lost.
 */
export type AlertLevel = 'info' | 'warning' | 'error' | 'critical';

export type AlertRecipient = { kind: 'user'; userUuid: string } | { kind: 'admin' };

export interface PlatformAlert {
  recipient: AlertRecipient;
  /** Machine-readable origin, dotted: `unit.log`, `load.cutoff`, `process.crash`, `billing.grace`. */
  source: string;
  level: AlertLevel;
  /** The unit the alert is about, when there is one (used for grouping and mute windows). */
  unitUuid?: string;
  /** Human text of one alert; the sender merges several into one message when throttled. */
  text: string;
  /** Alerts with the same key are merged into "+N more" lines; defaults to `source`. */
  key?: string;
}

export interface AlertSink {
  raise(alert: PlatformAlert): Promise<void>;
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/** Decorated as `app.alertSink`; components raise through it, the alerts plugin attaches the target. */
export class AlertSinkHub implements AlertSink {
  private target: AlertSink | undefined;

  constructor(private readonly logger: WarnLogger) {}

  /** Attaches the delivery target (the alerts plugin); `undefined` detaches it (shutdown). */
  use(target: AlertSink | undefined): void {
    this.target = target;
  }

  get attached(): boolean {
    return this.target !== undefined;
  }

  async raise(alert: PlatformAlert): Promise<void> {
    if (this.target) return this.target.raise(alert);
    this.logger.warn(
      { alert: { source: alert.source, level: alert.level, unitUuid: alert.unitUuid, recipient: alert.recipient.kind } },
      `alert (no delivery configured): ${alert.text}`,
    );
  }
}
