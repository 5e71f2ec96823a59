/**
 * `POST <prefix>/api/v1/emqx/alerts/:kind` — the receiving end of EMQX's HTTP action `http:pu-alerts`
 * (docs/ALERTS.md): one request per alert rule output.
 *
 * - Authenticated with `authorization: Bearer <PU_ALERT_WEBHOOK_SECRET>` (compared in constant
 *   time); anything else is 401.
 * - Answered when the alert is buffered (PU_ALERT_WEBHOOK_ACK=queued, the default) or stored
 *   in Postgres (`stored`).
 * - Bad input is a final 4xx (EMQX does not retry it): unknown kind 404, a body that does not
 *   match the kind 422. 503 (and 429) are used only to ask EMQX to retry: the intake buffer is
 *   full or Postgres failed.
 * - `unit_log` entries go to the unit's creator (the intake re-checks the unit's level: the rule
 *   may lag a settings change). `authz_deny` and `disconnect` are rate-filtered here into admin
 *   alerts: one per denied client per minute (with the count of repeats in the next one), and one
 *   per minute when abnormal disconnects reach PU_ALERT_DISCONNECT_STORM.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { isUuid } from '@pepeunit/common/topics';
import { AlertQueueFullError, type AlertIntake } from './intake.js';
import { normaliseLevel, type IncomingAlert } from './model.js';

export interface AlertWebhookOptions {
  readonly secret: string;
  readonly intake: AlertIntake;
  /** PU_ALERT_DISCONNECT_STORM: abnormal disconnects per minute that raise an admin alert. */
  readonly disconnectStorm: number;
  /** Clients tracked per minute for denial alerts (default 10 000; beyond that they are summed up). */
  readonly maxTrackedClients?: number;
  /** Counters, owned by the caller (metrics, tests). */
  readonly stats: AlertWebhookStats;
  /**
   * PU_ALERT_WEBHOOK_ACK: `queued` answers once the alert is in the bounded intake buffer (written
   * within milliseconds; flushed at shutdown; a crash loses what is buffered), `stored` once it is
   * committed to Postgres (EMQX's embedded stand-in and EMQX without pipelining then wait a commit
   * per request).
   */
  readonly ack: 'queued' | 'stored';
}

export interface AlertWebhookStats {
  accepted: number;
  unauthorized: number;
  invalid: number;
  retryAsked: number;
  authzDenials: number;
  disconnects: number;
}

/**
 * Whether `header` is `expected`, in time independent of where they differ (only a different
 * length answers early, and the length of the secret is no secret worth a hash per request).
 */
function sameSecret(header: string, expected: Buffer): boolean {
  if (Buffer.byteLength(header) !== expected.length) return false;
  return timingSafeEqual(Buffer.from(header), expected);
}

/** EMQX renders a missing field as "undefined"; the embedded broker as null. */
function present(value: unknown): string | undefined {
  if (value === null || value === undefined || value === 'undefined' || value === '') return undefined;
  return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

function timeOf(value: unknown): Date | undefined {
  const ms = typeof value === 'number' ? value : typeof value === 'string' && /^\d{10,16}$/.test(value) ? Number(value) : NaN;
  // Within a day of now: a device clock far off must not reorder the history.
  if (!Number.isFinite(ms) || Math.abs(ms - Date.now()) > 86_400_000) return undefined;
  return new Date(ms);
}

class Invalid extends Error {}

/** Minute windows of the instance-level filters (bounded maps, reset every minute). */
class BrokerEventFilter {
  private windowStart = 0;
  private denials = new Map<string, number>();
  private overflowDenials = 0;
  private disconnects = 0;
  private reasons = new Map<string, number>();
  private stormRaised = false;

  constructor(private readonly storm: number, private readonly maxClients: number) {}

  /** Rolls the window; returns the summary alerts of the window that ended. */
  private roll(now: number): IncomingAlert[] {
    if (now - this.windowStart < 60_000) return [];
    const out: IncomingAlert[] = [];
    const repeats = [...this.denials.entries()].filter(([, n]) => n > 1);
    if (repeats.length > 0 || this.overflowDenials > 0) {
      const total = repeats.reduce((sum, [, n]) => sum + n - 1, 0) + this.overflowDenials;
      out.push({
        recipient: { kind: 'admin' },
        source: 'broker.authz_deny',
        level: 'Warning',
        key: 'repeats',
        text: `${total} more authorization denials in the last minute (${repeats.length + (this.overflowDenials > 0 ? 1 : 0)} clients)`,
      });
    }
    this.windowStart = now;
    this.denials = new Map();
    this.overflowDenials = 0;
    this.disconnects = 0;
    this.reasons = new Map();
    this.stormRaised = false;
    return out;
  }

  denial(body: Record<string, unknown>, now: number): IncomingAlert[] {
    const out = this.roll(now);
    const clientid = present(body.clientid) ?? '(no client id)';
    const seen = this.denials.get(clientid);
    if (seen !== undefined) {
      this.denials.set(clientid, seen + 1);
      return out;
    }
    if (this.denials.size >= this.maxClients) {
      this.overflowDenials++;
      return out;
    }
    this.denials.set(clientid, 1);
    const who = [present(body.username) ? `user ${present(body.username)!.slice(0, 40)}` : undefined, present(body.peerhost)].filter(Boolean).join(', ');
    out.push({
      recipient: { kind: 'admin' },
      source: 'broker.authz_deny',
      level: 'Warning',
      key: clientid.slice(0, 100),
      text: `Authorization denied: client ${clientid.slice(0, 100)}${who ? ` (${who})` : ''} ${present(body.action) ?? 'access'} ${present(body.topic)?.slice(0, 200) ?? ''}`.trim(),
      ...(timeOf(body.timestamp) ? { at: timeOf(body.timestamp) } : {}),
    });
    return out;
  }

  disconnect(body: Record<string, unknown>, now: number): IncomingAlert[] {
    const out = this.roll(now);
    this.disconnects++;
    const reason = present(body.reason) ?? 'unknown';
    if (this.reasons.size < 32 || this.reasons.has(reason)) this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
    if (!this.stormRaised && this.disconnects >= this.storm) {
      this.stormRaised = true;
      const reasons = [...this.reasons.entries()].map(([r, n]) => `${r} ${n}`).join(', ');
      out.push({
        recipient: { kind: 'admin' },
        source: 'broker.disconnect_storm',
        level: 'Error',
        text: `Disconnect storm: ${this.disconnects} abnormal disconnects within a minute (${reasons})`,
      });
    }
    return out;
  }
}

export function alertWebhookRoutes(opts: AlertWebhookOptions): FastifyPluginAsync {
  return async (app) => {
    const expected = Buffer.from(`Bearer ${opts.secret}`);
    const { stats } = opts;
    const filter = new BrokerEventFilter(opts.disconnectStorm, opts.maxTrackedClients ?? 10_000);

    app.post<{ Params: { kind: string }; Body: unknown }>('/alerts/:kind', {
      schema: { hide: true },
      bodyLimit: 64 * 1024,
    }, async (request, reply) => {
      const header = request.headers.authorization;
      if (typeof header !== 'string' || !sameSecret(header, expected)) {
        stats.unauthorized++;
        return reply.code(401).send({ detail: '401: Unauthorized: alert webhook secret missing or wrong' });
      }
      const kind = request.params.kind;
      if (kind !== 'unit_log' && kind !== 'authz_deny' && kind !== 'disconnect') {
        stats.invalid++;
        return reply.code(404).send({ detail: `404: Not Found: unknown alert kind ${JSON.stringify(kind.slice(0, 40))}` });
      }
      const body = request.body;
      let alerts: IncomingAlert[];
      try {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Invalid('the body must be a JSON object');
        const fields = body as Record<string, unknown>;
        if (fields.kind !== undefined && fields.kind !== request.params.kind) throw new Invalid('kind in the body differs from the path');
        const now = Date.now();
        switch (request.params.kind) {
          case 'unit_log': {
            const level = normaliseLevel(fields.level);
            if (!level) throw new Invalid('level must be one of Debug, Info, Warning, Error, Critical');
            const unit = typeof fields.unit_uuid === 'string' && isUuid(fields.unit_uuid) ? fields.unit_uuid.toLowerCase() : undefined;
            if (!unit) throw new Invalid('unit_uuid must be a UUID');
            const at = timeOf(fields.timestamp);
            alerts = [{ recipient: { kind: 'unitCreator' }, source: 'unit.log', level, unitUuid: unit, text: present(fields.text) ?? '(no text)', ...(at ? { at } : {}) }];
            break;
          }
          case 'authz_deny':
            stats.authzDenials++;
            alerts = filter.denial(fields, now);
            break;
          default:
            stats.disconnects++;
            alerts = filter.disconnect(fields, now);
        }
      } catch (error) {
        if (!(error instanceof Invalid)) throw error;
        stats.invalid++;
        return reply.code(422).send({ detail: `422: Validation Error: ${error.message}` });
      }
      if (opts.ack === 'queued') {
        if (!opts.intake.hasRoom(alerts.length)) {
          stats.retryAsked++;
          return reply.code(503).header('retry-after', '1').send({ detail: '503: alert queue full, retry' });
        }
        // Failures are retried by the intake and logged there.
        opts.intake.submit(alerts).catch(() => {});
        stats.accepted++;
        return reply.code(204).send();
      }
      try {
        await opts.intake.submit(alerts);
      } catch (error) {
        stats.retryAsked++;
        if (error instanceof AlertQueueFullError) return reply.code(503).header('retry-after', '1').send({ detail: '503: alert queue full, retry' });
        request.log.warn({ err: error }, 'alert not stored; asking the broker to retry');
        return reply.code(503).header('retry-after', '1').send({ detail: '503: alert not stored, retry' });
      }
      stats.accepted++;
      return reply.code(204).send();
    });
  };
}

export function newWebhookStats(): AlertWebhookStats {
  return { accepted: 0, unauthorized: 0, invalid: 0, retryAsked: 0, authzDenials: 0, disconnects: 0 };
}
