/**
 * Automatic cut-off of units over their MPS limit (docs/LOAD.md "Cut-off ladder").
 *
 * Rule: a sample is "over" when the unit's MPS during the sampling interval is above
 * limit x PU_LOAD_EXCESS_FACTOR. A unit over for PU_LOAD_EXCESS_WINDOW seconds without a break
 * (counted from the start of its first interval over) is cut off:
 *   1. ban through the broker API: `POST /api/v5/banned {as: clientid_re, who: ^<unit>([-_].*)?$,
 *      until}` (every client id bound to the unit; EMQX refuses it at connect), then
 *   2. kick its live sessions (`DELETE /api/v5/clients/{id}`: a regex ban only applies at connect).
 * The ban lasts the ladder step's duration (PU_LOAD_CUTOFF_LADDER, default 1 min, 10 min, 1 h,
 * 1 day). A new cut-off within PU_LOAD_CUTOFF_RESET seconds of the last release goes one step up
 * (the last step repeats); later, the ladder starts again. The ban is lifted on schedule (the
 * broker expires it; the sampler records the release and deletes it), or by an admin (lift,
 * extend). Every decision is a row of `load_decisions`; the unit's state is `load_unit_cutoffs`.
 * The owner gets one alert (app.alertSink, source `load.cutoff`) per cut-off, i.e. per step.
 * Per-client throttling is not available on EMQX 5.8 open source (emqx-5.md §6.3), so there is
 * no softer step before the ban; the listener `messages_rate` is the global ceiling.
 */
import type { Pool } from 'pg';
import { Counter, type Registry } from 'prom-client';
import { isUnitClientId, silentLogger, type Logger } from '@pepeunit/common';
import { EmqxApiError, type EmqxManagementClient } from '@pepeunit/emqx-rules';
import type { AlertSink } from '../domain/alert-sink.js';
import type { Limits } from './limits.js';
import type { LoadSample } from './sampler.js';

export interface CutoffSettings {
  enabled: boolean;
  windowSeconds: number;
  factor: number;
  ladderSeconds: readonly number[];
  resetSeconds: number;
}

export interface CutoffState {
  unit_uuid: string;
  active: boolean;
  step: number;
  reason: string;
  mps: number;
  limit_mps: number;
  limit_source: string;
  cut_at: string;
  until: string;
  released_at: string | null;
  release_reason: string | null;
}

export interface Cutoff {
  /** The sampler's listener: evaluates every unit, cuts off, releases expired cut-offs. */
  onSample(sample: LoadSample): Promise<void>;
  /** Releases cut-offs whose time is over (also called by onSample). */
  releaseExpired(now?: number): Promise<number>;
  state(unitUuid: string): Promise<CutoffState | null>;
  lift(unitUuid: string, adminUuid: string): Promise<CutoffState | null>;
  /** New end of an active cut-off (or a new admin cut-off at the current step when none is active). */
  extend(unitUuid: string, untilMs: number, adminUuid: string): Promise<CutoffState | null>;
  unitDeleted(unitUuid: string): Promise<void>;
  /** Units currently over (unit -> since ms), for the admin view. */
  readonly overSince: ReadonlyMap<string, number>;
}

export interface CutoffOptions {
  pg: Pool;
  client: () => EmqxManagementClient | null;
  limits: Limits;
  alerts: AlertSink;
  settings: CutoffSettings;
  logger?: Logger;
  registry?: Registry;
}

const BANNED_BY = 'pepeunit-load';

export function unitBanPattern(unitUuid: string): string {
  return `^${unitUuid.toLowerCase()}([-_].*)?$`;
}

function human(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day${seconds === 86400 ? '' : 's'}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

const round = (x: number): number => Math.round(x * 100) / 100;

const STATE_COLUMNS = `unit_uuid::text, active, step, reason, mps, limit_mps, limit_source,
  to_char(cut_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS cut_at, to_char(until, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS until,
  to_char(released_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS released_at, release_reason`;

export function createCutoff(opts: CutoffOptions): Cutoff {
  const logger = opts.logger ?? silentLogger;
  const { settings } = opts;
  const registers = opts.registry ? [opts.registry] : [];
  const decisions = new Counter({ name: 'pepeunit_load_cutoff_decisions_total', help: 'Cut-off decisions by kind', labelNames: ['decision'] as const, registers });
  const overSince = new Map<string, number>();
  /** Units whose cut-off is active (mirrors load_unit_cutoffs.active; read every sample). */
  let active: Set<string> | undefined;
  let bansChecked = false;

  async function record(unitUuid: string, creatorUuid: string | null, decision: string, fields: { step?: number; mps?: number; limit?: number; source?: string; until?: number; actor: string; detail?: string }): Promise<void> {
    decisions.inc({ decision });
    await opts.pg.query(
      `INSERT INTO load_decisions (unit_uuid, creator_uuid, decision, step, mps, limit_mps, limit_source, until, actor, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::double precision / 1000) AT TIME ZONE 'utc', $9, $10)`,
      [unitUuid, creatorUuid, decision, fields.step ?? null, fields.mps ?? null, fields.limit ?? null, fields.source ?? null, fields.until ?? null, fields.actor, fields.detail ?? ''],
    );
  }

  async function ban(unitUuid: string, untilMs: number, reason: string): Promise<void> {
    const api = opts.client();
    if (!api) throw new Error('no broker management API configured');
    const body = { as: 'clientid_re' as const, who: unitBanPattern(unitUuid), by: BANNED_BY, reason: reason.slice(0, 250), until: Math.ceil(untilMs / 1000) };
    try {
      await api.createBan(body);
    } catch (error) {
      if (!(error instanceof EmqxApiError && error.status === 400 && error.code === 'ALREADY_EXISTS')) throw error;
      // No update in EMQX: delete and create again to change `until`.
      await api.deleteBan('clientid_re', body.who);
      await api.createBan(body);
    }
    // A regex ban applies at connect: cut the live sessions.
    for await (const info of api.iterateClients({ like_clientid: unitUuid.toLowerCase(), fields: ['clientid'] })) {
      if (isUnitClientId(info.clientid, unitUuid)) await api.kickClient(info.clientid);
    }
  }

  async function unban(unitUuid: string): Promise<void> {
    const api = opts.client();
    if (!api) return;
    await api.deleteBan('clientid_re', unitBanPattern(unitUuid));
  }

  async function state(unitUuid: string): Promise<CutoffState | null> {
    const { rows } = await opts.pg.query<CutoffState>(`SELECT ${STATE_COLUMNS} FROM load_unit_cutoffs WHERE unit_uuid = $1`, [unitUuid]);
    return rows[0] ?? null;
  }

  async function loadActive(): Promise<Set<string>> {
    const { rows } = await opts.pg.query<{ unit_uuid: string }>('SELECT unit_uuid::text FROM load_unit_cutoffs WHERE active');
    return new Set(rows.map((row) => row.unit_uuid));
  }

  async function cutOff(unitUuid: string, creatorUuid: string, mps: number, limit: number, source: string, now: number, overMs: number): Promise<void> {
    const previous = await state(unitUuid);
    if (previous?.active) return;
    const releasedAt = previous?.released_at ? Date.parse(previous.released_at) : undefined;
    const repeat = previous !== null && releasedAt !== undefined && now - releasedAt <= settings.resetSeconds * 1000;
    const step = repeat ? Math.min((previous as CutoffState).step + 1, settings.ladderSeconds.length - 1) : 0;
    const seconds = settings.ladderSeconds[step] as number;
    const until = now + seconds * 1000;
    const reason = `${round(mps)} MPS over the limit of ${round(limit)} MPS (${source}) for ${Math.round(overMs / 1000)} s`;
    try {
      await ban(unitUuid, until, `mps limit: ${reason}`);
    } catch (error) {
      logger.warn({ unit: unitUuid, err: (error as Error).message }, 'cut-off: the broker refused the ban; retried at the next sample');
      await record(unitUuid, creatorUuid, 'ban_failed', { step, mps, limit, source, until, actor: 'system', detail: (error as Error).message.slice(0, 500) });
      return;
    }
    await opts.pg.query(
      `INSERT INTO load_unit_cutoffs (unit_uuid, step, active, reason, mps, limit_mps, limit_source, cut_at, until, released_at, release_reason, update_datetime)
       VALUES ($1, $2, true, $3, $4, $5, $6, to_timestamp($7::double precision / 1000) AT TIME ZONE 'utc', to_timestamp($8::double precision / 1000) AT TIME ZONE 'utc', NULL, NULL, now() AT TIME ZONE 'utc')
       ON CONFLICT (unit_uuid) DO UPDATE SET step = EXCLUDED.step, active = true, reason = EXCLUDED.reason, mps = EXCLUDED.mps, limit_mps = EXCLUDED.limit_mps,
         limit_source = EXCLUDED.limit_source, cut_at = EXCLUDED.cut_at, until = EXCLUDED.until, released_at = NULL, release_reason = NULL, update_datetime = EXCLUDED.update_datetime`,
      [unitUuid, step, reason, mps, limit, source, now, until],
    );
    active?.add(unitUuid);
    await record(unitUuid, creatorUuid, 'cutoff', { step, mps, limit, source, until, actor: 'system', detail: reason });
    logger.warn({ unit: unitUuid, step, mps: round(mps), limit, source, seconds }, 'unit cut off: over its MPS limit');
    const { rows } = await opts.pg.query<{ name: string }>('SELECT name FROM units WHERE uuid = $1', [unitUuid]);
    const name = rows[0]?.name ?? unitUuid;
    const next = settings.ladderSeconds[Math.min(step + 1, settings.ladderSeconds.length - 1)] as number;
    await opts.alerts
      .raise({
        recipient: { kind: 'user', userUuid: creatorUuid },
        source: 'load.cutoff',
        level: 'warning',
        unitUuid,
        key: `load.cutoff:${unitUuid}:${step}`,
        text: `Unit ${name} is cut off for ${human(seconds)} (step ${step + 1} of ${settings.ladderSeconds.length}): ${reason}. A repeat within ${human(settings.resetSeconds)} after the release is cut off for ${human(next)}.`,
      })
      .catch((error: unknown) => logger.warn({ unit: unitUuid, err: (error as Error).message }, 'cut-off alert not raised'));
  }

  async function release(unitUuid: string, why: 'expired' | 'admin', actor: string, now: number): Promise<CutoffState | null> {
    await unban(unitUuid);
    const { rows } = await opts.pg.query<CutoffState & { creator_uuid: string | null }>(
      `UPDATE load_unit_cutoffs c SET active = false, released_at = to_timestamp($2::double precision / 1000) AT TIME ZONE 'utc', release_reason = $3, update_datetime = now() AT TIME ZONE 'utc'
        WHERE unit_uuid = $1 AND active RETURNING ${STATE_COLUMNS}, (SELECT creator_uuid::text FROM units WHERE uuid = c.unit_uuid) AS creator_uuid`,
      [unitUuid, now, why],
    );
    active?.delete(unitUuid);
    overSince.delete(unitUuid);
    const row = rows[0];
    if (!row) return null;
    await record(unitUuid, row.creator_uuid, why === 'admin' ? 'lift' : 'release', { step: row.step, actor });
    logger.info({ unit: unitUuid, why }, 'unit cut-off released');
    const { creator_uuid: _creator, ...stateRow } = row;
    return stateRow;
  }

  async function releaseExpired(now = Date.now()): Promise<number> {
    const { rows } = await opts.pg.query<{ unit_uuid: string }>(
      `SELECT unit_uuid::text FROM load_unit_cutoffs WHERE active AND until <= to_timestamp($1::double precision / 1000) AT TIME ZONE 'utc'`,
      [now],
    );
    let released = 0;
    for (const row of rows) {
      try {
        if (await release(row.unit_uuid, 'expired', 'system', now)) released += 1;
      } catch (error) {
        logger.warn({ unit: row.unit_uuid, err: (error as Error).message }, 'cut-off release failed; retried at the next sample');
      }
    }
    return released;
  }

  /** After a restart (of the backend or of a broker without state) the active bans are put back. */
  async function restoreBans(): Promise<void> {
    const { rows } = await opts.pg.query<{ unit_uuid: string; until_ms: string; reason: string }>(
      `SELECT unit_uuid::text, (extract(epoch from until) * 1000)::bigint AS until_ms, reason FROM load_unit_cutoffs WHERE active`,
    );
    const api = opts.client();
    if (!api) return;
    for (const row of rows) {
      if (Number(row.until_ms) <= Date.now()) continue;
      try {
        await api.createBan({ as: 'clientid_re', who: unitBanPattern(row.unit_uuid), by: BANNED_BY, reason: `mps limit: ${row.reason}`.slice(0, 250), until: Math.ceil(Number(row.until_ms) / 1000) });
      } catch (error) {
        if (!(error instanceof EmqxApiError && error.code === 'ALREADY_EXISTS')) logger.warn({ unit: row.unit_uuid, err: (error as Error).message }, 'cut-off ban not restored');
      }
    }
  }

  return {
    overSince,
    async onSample(sample) {
      if (!bansChecked) {
        bansChecked = true;
        await restoreBans();
      }
      // Read every cycle: an admin may have lifted or extended a cut-off on another replica.
      active = await loadActive();
      await releaseExpired(sample.takenAt);
      if (!settings.enabled || sample.elapsedMs <= 0) return;
      const intervalStart = sample.takenAt - sample.elapsedMs;
      const creators = new Set<string>();
      for (const [unit, load] of sample.loads) if (load.mps > 0) creators.add(sample.units.get(unit)?.creatorUuid ?? '');
      creators.delete('');
      await opts.limits.prefetch(creators);
      for (const [unit, load] of sample.loads) {
        if (load.mps <= 0 || active.has(unit)) {
          overSince.delete(unit);
          continue;
        }
        const info = sample.units.get(unit);
        if (!info) continue;
        const limit = opts.limits.cached(info.creatorUuid) ?? (await opts.limits.forUser(info.creatorUuid));
        if (limit.mps === null || load.mps <= limit.mps * settings.factor) {
          overSince.delete(unit);
          continue;
        }
        const since = overSince.get(unit) ?? intervalStart;
        overSince.set(unit, since);
        const overMs = sample.takenAt - since;
        if (overMs >= settings.windowSeconds * 1000) {
          try {
            await cutOff(unit, info.creatorUuid, load.mps, limit.mps, limit.source, sample.takenAt, overMs);
            overSince.delete(unit);
          } catch (error) {
            logger.warn({ unit, err: (error as Error).message }, 'cut-off failed; retried at the next sample');
          }
        }
      }
      for (const unit of overSince.keys()) if (!sample.loads.has(unit)) overSince.delete(unit);
    },
    releaseExpired,
    state,
    async lift(unitUuid, adminUuid) {
      return release(unitUuid, 'admin', `admin:${adminUuid}`, Date.now());
    },
    async extend(unitUuid, untilMs, adminUuid) {
      const current = await state(unitUuid);
      if (!current?.active) return null;
      await ban(unitUuid, untilMs, `mps limit (extended by an admin): ${current.reason}`);
      await opts.pg.query(`UPDATE load_unit_cutoffs SET until = to_timestamp($2::double precision / 1000) AT TIME ZONE 'utc', update_datetime = now() AT TIME ZONE 'utc' WHERE unit_uuid = $1`, [unitUuid, untilMs]);
      const { rows } = await opts.pg.query<{ creator_uuid: string | null }>('SELECT creator_uuid::text FROM units WHERE uuid = $1', [unitUuid]);
      await record(unitUuid, rows[0]?.creator_uuid ?? null, 'extend', { step: current.step, until: untilMs, actor: `admin:${adminUuid}` });
      return state(unitUuid);
    },
    async unitDeleted(unitUuid) {
      overSince.delete(unitUuid);
      active?.delete(unitUuid);
      const { rowCount } = await opts.pg.query('DELETE FROM load_unit_cutoffs WHERE unit_uuid = $1 AND active', [unitUuid]);
      await opts.pg.query('DELETE FROM load_unit_cutoffs WHERE unit_uuid = $1', [unitUuid]);
      if (rowCount) await unban(unitUuid);
    },
  };
}
