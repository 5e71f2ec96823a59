/**
 * The alert intake: everything that alerts (the EMQX webhook, `app.alertSink`) ends up here and is
 * written to the outbox table `alert_events` before the caller gets its answer.
 *
 * Writes are group-committed: submissions wait in a bounded buffer (PU_ALERT_QUEUE_MAX alerts)
 * while one batch is being written (and a small batch waits `lingerMs` for more), then the next
 * batch (up to 2,000 alerts) is written: three queries resolve the recipients (unit creators,
 * admins, their Telegram chats, the units' alert levels and the users' mute windows), one
 * multi-row INSERT stores the alerts.
 * A full buffer refuses new alerts (`AlertQueueFullError`, the webhook answers 503 so EMQX retries)
 * instead of growing; an accepted alert is in Postgres when `submit` resolves, so a crash after
 * the answer loses nothing.
 *
 * A unit log alert is dropped (counted, not stored) when the unit no longer exists or its alert
 * level is now off or above the entry's level: the broker's rule may lag a settings change.
 */
import type { Pool } from 'pg';
import type { Logger } from '@pepeunit/common';
import { MAX_ALERT_TEXT, levelRank, normaliseLevel, type AlertState, type IncomingAlert } from './model.js';

export class AlertQueueFullError extends Error {
  constructor(readonly max: number) {
    super(`alert queue full (${max} alerts waiting for Postgres)`);
    this.name = 'AlertQueueFullError';
  }
}

export interface AlertIntakeStats {
  /** Alerts stored in alert_events, by state. */
  stored: Record<AlertState, number>;
  /** Dropped on purpose: unit gone, level below the unit's setting, no recipient. */
  dropped: { unitGone: number; belowLevel: number; noRecipient: number };
  /** Refused because the buffer was full (the sender was asked to retry). */
  refused: number;
  /** Batch writes that failed and were tried again. */
  writeRetries: number;
  /** Alerts given up after MAX_WRITE_ATTEMPTS failed writes (logged as errors). */
  lost: number;
  batches: number;
  /** Alerts waiting in the buffer now. */
  queued: number;
}

interface Waiting {
  readonly alerts: readonly IncomingAlert[];
  resolve(): void;
  reject(error: unknown): void;
  /** Failed writes so far. */
  attempts: number;
}

/** A batch whose write failed this many times is given up (its alerts counted in `lost`). */
export const MAX_WRITE_ATTEMPTS = 5;

export interface AlertIntakeOptions {
  readonly pg: Pool;
  readonly logger: Logger;
  /** PU_ALERT_QUEUE_MAX. */
  readonly queueMax: number;
  /** Alerts per transaction at most (default 2000). */
  readonly batchMax?: number;
  /**
   * Group commit: a write that would take less than `batchMax` alerts first waits this long for
   * more (default 5 ms; 0 writes at once). Under a burst the batches grow from about 150 to about
   * 270 alerts and the intake's round trips to Postgres fall by 40 %; an alert waits at most
   * this much longer for its commit. Not applied while closing.
   */
  readonly lingerMs?: number;
  /** Called after a batch with pending alerts was committed (wakes the sender). */
  readonly onStored?: () => void;
}

function cut(text: string): string {
  return text.length > MAX_ALERT_TEXT ? `${text.slice(0, MAX_ALERT_TEXT - 1)}…` : text;
}

const RECIPIENTS_SQL = `
  SELECT u.uuid::text AS unit_uuid, u.creator_uuid::text AS creator_uuid, s.min_level
    FROM units u LEFT JOIN alert_unit_settings s ON s.unit_uuid = u.uuid
   WHERE u.uuid = ANY($1::uuid[])`;
const USERS_SQL = `
  SELECT u.uuid::text AS uuid, u.telegram_chat_id, u.role,
         EXISTS (SELECT 1 FROM alert_chats c
                  WHERE c.chat_id = CASE WHEN u.telegram_chat_id ~ '^-?[0-9]{1,18}$' THEN u.telegram_chat_id::bigint END
                    AND c.blocked_at IS NOT NULL) AS blocked
    FROM users u WHERE u.uuid = ANY($1::uuid[]) OR ($2 AND u.role = 'Admin')`;
const MUTES_SQL = `
  SELECT user_uuid::text AS user_uuid, unit_uuid::text AS unit_uuid, starts_at, ends_at
    FROM alert_mute_windows WHERE user_uuid = ANY($1::uuid[]) AND ends_at > $2 AND starts_at <= $3`;
const INSERT_SQL = `
  INSERT INTO alert_events (recipient_uuid, chat_id, source, level, unit_uuid, group_key, text, state, create_datetime)
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])`;

export class AlertIntake {
  private readonly buffer: Waiting[] = [];
  private queued = 0;
  private writing: Promise<void> | undefined;
  private closed = false;
  readonly stats: AlertIntakeStats = {
    stored: { pending: 0, sent: 0, muted: 0, no_chat: 0, failed: 0 },
    dropped: { unitGone: 0, belowLevel: 0, noRecipient: 0 },
    refused: 0,
    writeRetries: 0,
    lost: 0,
    batches: 0,
    queued: 0,
  };
  private readonly batchMax: number;
  private readonly lingerMs: number;

  constructor(private readonly opts: AlertIntakeOptions) {
    this.batchMax = opts.batchMax ?? 2000;
    this.lingerMs = opts.lingerMs ?? 5;
  }

  /** Whether `n` more alerts fit in the buffer now. */
  hasRoom(n: number): boolean {
    return !this.closed && this.queued + n <= this.opts.queueMax;
  }

  /** Resolves once the alerts are committed to Postgres; rejects with AlertQueueFullError when full. */
  submit(alerts: readonly IncomingAlert[]): Promise<void> {
    if (alerts.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(new AlertQueueFullError(this.opts.queueMax));
    if (this.queued + alerts.length > this.opts.queueMax) {
      this.stats.refused += alerts.length;
      return Promise.reject(new AlertQueueFullError(this.opts.queueMax));
    }
    return new Promise<void>((resolve, reject) => {
      this.buffer.push({ alerts, resolve, reject, attempts: 0 });
      this.queued += alerts.length;
      this.stats.queued = this.queued;
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing || this.buffer.length === 0) return;
    this.writing = this.writeLoop().finally(() => {
      this.writing = undefined;
      this.kick();
    });
  }

  private async writeLoop(): Promise<void> {
    while (this.buffer.length > 0) {
      if (this.lingerMs > 0 && !this.closed && this.queued < this.batchMax) await new Promise((resolve) => setTimeout(resolve, this.lingerMs));
      const batch: Waiting[] = [];
      let count = 0;
      while (this.buffer.length > 0 && (count === 0 || count + this.buffer[0]!.alerts.length <= this.batchMax)) {
        const next = this.buffer.shift()!;
        batch.push(next);
        count += next.alerts.length;
      }
      try {
        const pending = await this.write(batch.flatMap((w) => w.alerts));
        for (const w of batch) w.resolve();
        if (pending > 0) this.opts.onStored?.();
        this.queued -= count;
      } catch (error) {
        // Accepted alerts are not dropped on a failed write: the batch goes back to the front
        // and is tried again after a pause (bounded: MAX_WRITE_ATTEMPTS, then counted as lost).
        const retry = batch.filter((w) => ++w.attempts < MAX_WRITE_ATTEMPTS);
        const given = batch.filter((w) => w.attempts >= MAX_WRITE_ATTEMPTS);
        const givenCount = given.reduce((n, w) => n + w.alerts.length, 0);
        for (const w of given) w.reject(error);
        this.queued -= givenCount;
        this.stats.lost += givenCount;
        this.buffer.unshift(...retry);
        this.stats.writeRetries++;
        if (givenCount > 0) this.opts.logger.error({ err: error, alerts: givenCount }, 'storing alerts failed repeatedly; these alerts are lost');
        else this.opts.logger.warn({ err: error, alerts: count }, 'storing alerts failed; retrying');
        if (retry.length > 0) await new Promise((resolve) => setTimeout(resolve, this.closed ? 200 : 1000));
      } finally {
        this.stats.queued = this.queued;
      }
    }
  }

  /** Writes one batch; returns how many alerts are pending delivery. */
  private async write(alerts: readonly IncomingAlert[]): Promise<number> {
    const now = new Date();
    const unitUuids = new Set<string>();
    const userUuids = new Set<string>();
    let admins = false;
    for (const a of alerts) {
      if (a.unitUuid) unitUuids.add(a.unitUuid.toLowerCase());
      if (a.recipient.kind === 'user') userUuids.add(a.recipient.userUuid.toLowerCase());
      else if (a.recipient.kind === 'admin') admins = true;
    }
    const client = await this.opts.pg.connect();
    try {
      const units = new Map<string, { creator: string | null; minLevel: string | null }>();
      if (unitUuids.size > 0) {
        const { rows } = await client.query<{ unit_uuid: string; creator_uuid: string | null; min_level: string | null }>(RECIPIENTS_SQL, [[...unitUuids]]);
        for (const row of rows) {
          units.set(row.unit_uuid, { creator: row.creator_uuid, minLevel: row.min_level });
          if (row.creator_uuid) userUuids.add(row.creator_uuid);
        }
      }
      const users = new Map<string, string | null>();
      const adminUuids: string[] = [];
      if (userUuids.size > 0 || admins) {
        const { rows } = await client.query<{ uuid: string; telegram_chat_id: string | null; role: string; blocked: boolean }>(USERS_SQL, [[...userUuids], admins]);
        for (const row of rows) {
          // A chat that blocked the bot is no reachable chat: the alert is stored as no_chat.
          users.set(row.uuid, row.blocked ? null : row.telegram_chat_id);
          if (row.role === 'Admin') adminUuids.push(row.uuid);
        }
      }
      const mutes = new Map<string, Array<{ unit: string | null; from: number; to: number }>>();
      if (users.size > 0) {
        const times = alerts.map((a) => (a.at ?? now).getTime());
        const { rows } = await client.query<{ user_uuid: string; unit_uuid: string | null; starts_at: Date; ends_at: Date }>(MUTES_SQL, [
          [...users.keys()],
          new Date(Math.min(...times)),
          new Date(Math.max(...times)),
        ]);
        for (const row of rows) {
          const list = mutes.get(row.user_uuid) ?? [];
          list.push({ unit: row.unit_uuid, from: row.starts_at.getTime(), to: row.ends_at.getTime() });
          mutes.set(row.user_uuid, list);
        }
      }

      const cols: [Array<string | null>, Array<string | null>, string[], string[], Array<string | null>, string[], string[], AlertState[], Date[]] = [[], [], [], [], [], [], [], [], []];
      let pending = 0;
      for (const alert of alerts) {
        const unit = alert.unitUuid?.toLowerCase();
        let recipients: string[];
        if (alert.recipient.kind === 'unitCreator') {
          const row = unit ? units.get(unit) : undefined;
          if (!row) {
            this.stats.dropped.unitGone++;
            continue;
          }
          const min = normaliseLevel(row.minLevel);
          if (alert.source === 'unit.log' && (!min || levelRank(alert.level) < levelRank(min))) {
            this.stats.dropped.belowLevel++;
            continue;
          }
          recipients = row.creator ? [row.creator] : [];
        } else if (alert.recipient.kind === 'admin') {
          recipients = adminUuids;
        } else {
          const uuid = alert.recipient.userUuid.toLowerCase();
          recipients = users.has(uuid) ? [uuid] : [];
        }
        if (recipients.length === 0) {
          this.stats.dropped.noRecipient++;
          continue;
        }
        const at = alert.at ?? now;
        const text = cut(alert.text);
        const groupKey = `${alert.source}|${unit ?? ''}|${alert.level}|${alert.key ?? ''}`.slice(0, 200);
        for (const recipient of recipients) {
          const bound = users.get(recipient) ?? null;
          const chat = bound !== null && /^-?\d{1,19}$/.test(bound) ? bound : null;
          const muted = (mutes.get(recipient) ?? []).some((m) => (m.unit === null || m.unit === unit) && m.from <= at.getTime() && at.getTime() < m.to);
          const state: AlertState = muted ? 'muted' : chat === null ? 'no_chat' : 'pending';
          if (state === 'pending') pending++;
          cols[0].push(recipient);
          cols[1].push(state === 'no_chat' ? null : chat);
          cols[2].push(alert.source);
          cols[3].push(alert.level);
          cols[4].push(unit ?? null);
          cols[5].push(groupKey);
          cols[6].push(text);
          cols[7].push(state);
          cols[8].push(at);
        }
      }
      if (cols[0].length > 0) await client.query(INSERT_SQL, cols);
      for (const state of cols[7]) this.stats.stored[state]++;
      this.stats.batches++;
      return pending;
    } finally {
      client.release();
    }
  }

  /** Waits until everything accepted so far is written (or given up). */
  async flush(): Promise<void> {
    while (this.writing || this.buffer.length > 0) {
      if (this.writing) await this.writing;
      else this.kick();
    }
  }

  /** Waits for everything accepted so far to be written; later submissions are refused. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing) await this.writing;
  }
}
