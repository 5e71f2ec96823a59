/**
 * The throttled Telegram sender: turns the pending rows of `alert_events` into messages, at most
 * one message per chat per PU_TELEGRAM_ALERT_INTERVAL, and at most PU_TELEGRAM_GLOBAL_RATE
 * messages per second from this replica.
 *
 * One chat is handled in one transaction:
 *   1. `alert_chats` row of the chat locked with FOR UPDATE SKIP LOCKED (another replica sending
 *      to this chat right now makes us skip it), and only when `next_send_at` has passed;
 *   2. every pending alert of the chat is taken (UPDATE … RETURNING into a new `alert_messages`
 *      row) and merged per group (unit, level, source) into one message;
 *   3. the message is sent while the lock is held; then the message row gets Telegram's id and
 *      the chat `next_send_at = now + interval`, and the transaction commits.
 * A crash or a lost connection before the commit rolls everything back: the alerts are pending
 * again and go out in the next message (at-least-once: a duplicate happens only if Telegram had
 * accepted the message and the commit was lost). Two replicas never send the same alerts (row
 * locks), and nothing is dropped silently: a message Telegram refuses for good (403 blocked,
 * 400) marks its alerts `failed` with the error; 429 moves `next_send_at` by `retry_after`;
 * 5xx and network errors back off (doubling from 2 s) and give up after MAX_FAILURES attempts,
 * marking the alerts `failed`. 429s on several chats within a few seconds pause the whole sender.
 * A 403 also marks the chat blocked (`alert_chats.blocked_at`, see `setChatBlocked`): nothing
 * more is sent to it, its pending alerts become `no_chat` without a call to Telegram, until the
 * chat unblocks the bot (my_chat_member "member", handled by the alerts plugin).
 */
import type { Pool, PoolClient } from 'pg';
import { GrammyError, HttpError } from 'grammy';
import type { Logger } from '@pepeunit/common';
import { formatAlertMessage, type AlertGroup } from './format.js';

export interface AlertTransport {
  /** Sends one HTML message; resolves with Telegram's message id; throws GrammyError / HttpError. */
  sendMessage(chatId: number, html: string): Promise<number>;
}

export interface AlertSenderOptions {
  readonly pg: Pool;
  readonly transport: AlertTransport;
  readonly logger: Logger;
  /** Instance domain shown in messages. */
  readonly domain: string;
  /** PU_TELEGRAM_ALERT_INTERVAL in seconds. */
  readonly intervalSeconds: number;
  /** PU_TELEGRAM_GLOBAL_RATE: messages per second from this replica. */
  readonly globalRate: number;
  /** Poll period for alerts stored by other replicas (default 500 ms). */
  readonly pollMs?: number;
  /** Chats sent to in parallel (default 2; each holds one Postgres connection while sending). */
  readonly concurrency?: number;
  /** PU_ALERT_HISTORY_DAYS: finished alerts and messages older than this are deleted. */
  readonly historyDays?: number;
}

export interface AlertSenderStats {
  messages: number;
  alerts: number;
  rateLimited: number;
  retries: number;
  failedMessages: number;
  failedAlerts: number;
  globalPauses: number;
  /** Pending alerts of a blocked chat turned into `no_chat` without a call to Telegram. */
  blockedAlerts: number;
}

/**
 * Marks a chat as blocking the bot (`reason` given) or as reachable again (`reason` null). The
 * sender sends nothing to a blocked chat and the intake stores its alerts as `no_chat`.
 */
export async function setChatBlocked(db: Pick<Pool | PoolClient, 'query'>, chatId: number, reason: string | null): Promise<void> {
  if (reason === null) {
    await db.query('UPDATE alert_chats SET blocked_at = NULL, blocked_reason = NULL WHERE chat_id = $1 AND blocked_at IS NOT NULL', [chatId]);
    return;
  }
  await db.query(
    `INSERT INTO alert_chats (chat_id, blocked_at, blocked_reason) VALUES ($1, clock_timestamp(), $2)
     ON CONFLICT (chat_id) DO UPDATE SET blocked_at = COALESCE(alert_chats.blocked_at, EXCLUDED.blocked_at), blocked_reason = EXCLUDED.blocked_reason`,
    [chatId, reason.slice(0, 500)],
  );
}

export const MAX_FAILURES = 6;

// The chats with pending alerts, found by skipping through the partial index
// idx_alert_events_pending (chat_id, id) WHERE pending: one index probe per chat instead of
// reading every pending alert (thousands while chats wait out their interval during a burst).
export const DUE_CHATS_SQL = `
  WITH RECURSIVE p(chat_id) AS (
    (SELECT chat_id FROM alert_events WHERE state = 'pending' AND chat_id IS NOT NULL ORDER BY chat_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.chat_id FROM alert_events e WHERE e.state = 'pending' AND e.chat_id > p.chat_id ORDER BY e.chat_id LIMIT 1)
      FROM p WHERE p.chat_id IS NOT NULL)
  SELECT p.chat_id::text AS chat_id FROM p
    LEFT JOIN alert_chats c ON c.chat_id = p.chat_id
   WHERE p.chat_id IS NOT NULL AND (c.chat_id IS NULL OR c.next_send_at <= now())
   LIMIT 64`;
const TAKE_SQL = `
  WITH taken AS (
    UPDATE alert_events SET state = 'sent', message_id = $2
     WHERE chat_id = $1 AND state = 'pending'
     RETURNING group_key, source, level, unit_uuid, text, create_datetime, id)
  SELECT t.group_key, min(t.source) AS source, min(t.level) AS level, min(t.unit_uuid::text) AS unit_uuid,
         count(*)::int AS count, min(t.create_datetime) AS first,
         (array_agg(t.text ORDER BY t.id DESC))[1] AS latest_text, min(u.name) AS unit_name
    FROM taken t LEFT JOIN units u ON u.uuid = t.unit_uuid
   GROUP BY t.group_key`;

class TokenBucket {
  private tokens: number;
  private last = Date.now();
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  /** Milliseconds until a token is available (0 = take it now). */
  take(): number {
    const now = Date.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}

function errorText(error: unknown): string {
  if (error instanceof GrammyError) return `${error.error_code}: ${error.description}`;
  if (error instanceof HttpError) return `network: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

export class AlertSender {
  readonly stats: AlertSenderStats = { messages: 0, alerts: 0, rateLimited: 0, retries: 0, failedMessages: 0, failedAlerts: 0, globalPauses: 0, blockedAlerts: 0 };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private pausedUntil = 0;
  private readonly recent429: Array<{ chat: number; at: number }> = [];
  private readonly bucket: TokenBucket;
  private lastCleanup = 0;

  constructor(private readonly opts: AlertSenderOptions) {
    this.bucket = new TokenBucket(opts.globalRate);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Something was stored: look now instead of at the next poll. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick().finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.schedule(0);
        } else {
          this.schedule(this.opts.pollMs ?? 500);
        }
      });
    }, ms);
  }

  /** One pass: every due chat once. Never rejects. */
  async tick(): Promise<void> {
    try {
      // Paused after 429s on several chats: the next poll looks again.
      if (this.pausedUntil > Date.now()) return;
      const { rows } = await this.opts.pg.query<{ chat_id: string }>(DUE_CHATS_SQL);
      const chats = rows.map((r) => Number(r.chat_id));
      const concurrency = this.opts.concurrency ?? 2;
      let next = 0;
      const worker = async () => {
        while (next < chats.length && !this.stopped && this.pausedUntil <= Date.now()) {
          const chat = chats[next++]!;
          for (let wait = this.bucket.take(); wait > 0; wait = this.bucket.take()) await this.sleep(wait);
          await this.sendChat(chat);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, chats.length) }, worker));
      if (Date.now() - this.lastCleanup > 3_600_000) {
        this.lastCleanup = Date.now();
        await this.cleanup();
      }
    } catch (error) {
      this.opts.logger.warn({ err: error }, 'alert sender pass failed; retrying');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.min(ms, 1000)));
  }

  /** Sends the pending alerts of one chat if it is due and not being sent by someone else. Returns true if a message went out. */
  async sendChat(chatId: number): Promise<boolean> {
    const client = await this.opts.pg.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO alert_chats (chat_id) VALUES ($1) ON CONFLICT DO NOTHING', [chatId]);
      const lock = await client.query<{ failures: number; blocked: boolean }>(
        'SELECT failures, blocked_at IS NOT NULL AS blocked FROM alert_chats WHERE chat_id = $1 AND next_send_at <= now() FOR UPDATE SKIP LOCKED',
        [chatId],
      );
      if (lock.rowCount === 0) {
        await client.query('ROLLBACK');
        return false;
      }
      if (lock.rows[0]!.blocked) {
        // Stored while the block was not known yet: not sent, as the intake does from now on.
        const skipped = await client.query("UPDATE alert_events SET state = 'no_chat' WHERE chat_id = $1 AND state = 'pending'", [chatId]);
        await client.query('COMMIT');
        this.stats.blockedAlerts += skipped.rowCount ?? 0;
        return false;
      }
      const failures = lock.rows[0]!.failures;
      await client.query('SAVEPOINT take');
      const message = await client.query<{ id: string }>("INSERT INTO alert_messages (chat_id, state, alert_count, text, attempts) VALUES ($1, 'sent', 0, '', $2) RETURNING id::text", [chatId, failures + 1]);
      const messageId = message.rows[0]!.id;
      const { rows } = await client.query<{ source: string; level: string; unit_uuid: string | null; count: number; first: Date; latest_text: string; unit_name: string | null }>(TAKE_SQL, [chatId, messageId]);
      if (rows.length === 0) {
        await client.query('ROLLBACK');
        return false;
      }
      const groups: AlertGroup[] = rows.map((r) => ({ source: r.source, level: r.level, unitUuid: r.unit_uuid, unitName: r.unit_name, count: r.count, first: r.first, latestText: r.latest_text }));
      const { text, count } = formatAlertMessage(groups, this.opts.domain);
      let telegramId: number;
      try {
        telegramId = await this.opts.transport.sendMessage(chatId, text);
      } catch (error) {
        await this.onSendError(client, chatId, messageId, failures, error);
        return false;
      }
      await client.query('UPDATE alert_messages SET text = $2, alert_count = $3, telegram_message_id = $4 WHERE id = $1', [messageId, text, count, telegramId]);
      await client.query('UPDATE alert_chats SET next_send_at = clock_timestamp() + make_interval(secs => $2), failures = 0, last_sent_at = clock_timestamp() WHERE chat_id = $1', [chatId, this.opts.intervalSeconds]);
      await client.query('COMMIT');
      this.stats.messages++;
      this.stats.alerts += count;
      return true;
    } catch (error) {
      broken = true;
      await client.query('ROLLBACK').catch(() => {});
      this.opts.logger.warn({ err: error, chatId }, 'alert delivery to a chat failed; its alerts stay pending');
      return false;
    } finally {
      client.release(broken);
    }
  }

  private async onSendError(client: PoolClient, chatId: number, messageId: string, failures: number, error: unknown): Promise<void> {
    const retryAfter = error instanceof GrammyError && error.error_code === 429 ? Number(error.parameters.retry_after ?? 1) : undefined;
    const permanent = error instanceof GrammyError && error.error_code >= 400 && error.error_code < 500 && error.error_code !== 429;
    const reason = errorText(error);
    if (retryAfter !== undefined) {
      // Not executed by Telegram: the same alerts go again after retry_after (merged with newer ones).
      this.stats.rateLimited++;
      await client.query('ROLLBACK TO SAVEPOINT take');
      await client.query('UPDATE alert_chats SET next_send_at = clock_timestamp() + make_interval(secs => $2) WHERE chat_id = $1', [chatId, Math.max(1, retryAfter)]);
      await client.query('COMMIT');
      this.note429(chatId, retryAfter);
      this.opts.logger.warn({ chatId, retryAfter }, 'Telegram rate limit (429): the chat waits retry_after');
      return;
    }
    if (permanent || failures + 1 >= MAX_FAILURES) {
      // Refused for good (blocked bot, chat not found, bad request) or out of retries: say so per alert.
      await client.query("UPDATE alert_messages SET state = 'failed', error = $2 WHERE id = $1", [messageId, reason.slice(0, 500)]);
      const failed = await client.query("UPDATE alert_events SET state = 'failed' WHERE message_id = $1", [messageId]);
      await client.query('UPDATE alert_chats SET next_send_at = clock_timestamp() + make_interval(secs => $2), failures = 0 WHERE chat_id = $1', [chatId, this.opts.intervalSeconds]);
      // 403: the user blocked the bot (or left the group): a person's choice, not our fault, and
      // every further message would be refused the same way.
      const blocked = error instanceof GrammyError && error.error_code === 403;
      if (blocked) await setChatBlocked(client, chatId, reason);
      await client.query('COMMIT');
      this.stats.failedMessages++;
      this.stats.failedAlerts += failed.rowCount ?? 0;
      if (blocked) this.opts.logger.warn({ chatId, error: reason, alerts: failed.rowCount }, 'the chat blocked the bot: its alerts are marked failed, later ones are not sent until it unblocks the bot');
      else this.opts.logger.error({ chatId, error: reason, alerts: failed.rowCount }, 'Telegram refused an alert message; its alerts are marked failed');
      return;
    }
    this.stats.retries++;
    await client.query('ROLLBACK TO SAVEPOINT take');
    const backoff = Math.min(300, 2 * 2 ** failures);
    await client.query('UPDATE alert_chats SET next_send_at = clock_timestamp() + make_interval(secs => $2), failures = failures + 1 WHERE chat_id = $1', [chatId, backoff]);
    await client.query('COMMIT');
    this.opts.logger.warn({ chatId, error: reason, retryInSeconds: backoff, attempt: failures + 1 }, 'alert message not delivered; retrying');
  }

  private note429(chatId: number, retryAfter: number): void {
    const now = Date.now();
    this.recent429.push({ chat: chatId, at: now });
    while (this.recent429.length && now - this.recent429[0]!.at > 5000) this.recent429.shift();
    if (this.recent429.length > 32) this.recent429.splice(0, this.recent429.length - 32);
    const chats = new Set(this.recent429.map((r) => r.chat));
    if (chats.size >= 3) {
      this.pausedUntil = Math.max(this.pausedUntil, now + retryAfter * 1000);
      this.stats.globalPauses++;
      this.opts.logger.warn({ retryAfter, chats: chats.size }, 'Telegram rate limits on several chats: the alert sender pauses');
    }
  }

  /** Deletes finished alerts and messages older than PU_ALERT_HISTORY_DAYS (in bounded batches). */
  async cleanup(): Promise<void> {
    const days = this.opts.historyDays ?? 30;
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await this.opts.pg.query(
        `DELETE FROM alert_events WHERE id IN (SELECT id FROM alert_events WHERE state <> 'pending' AND create_datetime < now() - make_interval(days => $1) LIMIT 5000)`,
        [days],
      );
      if (!rowCount) break;
    }
    await this.opts.pg.query('DELETE FROM alert_messages WHERE create_datetime < now() - make_interval(days => $1) AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.message_id = alert_messages.id)', [days]);
  }

  /** Stops polling and waits for the pass in progress (a message being sent is finished). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.running) await this.running;
  }
}
