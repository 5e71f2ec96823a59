/**
 * Alert settings over REST and in the bot: a unit's minimum alert level (only its creator may
 * read or change it), the caller's mute windows, and the caller's alert history.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { NoAccessError, NotFoundError, ValidationError } from '../errors.js';
import type { UnitLogLevel } from './model.js';

export interface UnitAlertSettings {
  unit_uuid: string;
  min_level: UnitLogLevel | null;
  update_datetime: string | null;
}

export interface MuteWindow {
  uuid: string;
  unit_uuid: string | null;
  starts_at: string;
  ends_at: string;
}

export interface AlertHistoryItem {
  id: number;
  source: string;
  level: string;
  unit_uuid: string | null;
  text: string;
  state: string;
  create_datetime: string;
  message_id: number | null;
}

/** Mute windows per user at most (each is checked for every alert of that user). */
export const MAX_MUTE_WINDOWS = 100;

export class AlertSettings {
  constructor(private readonly pg: Pool) {}

  /** The unit must exist and the caller must be its creator. */
  async requireUnitCreator(userUuid: string, unitUuid: string): Promise<void> {
    const { rows } = await this.pg.query<{ creator_uuid: string | null }>('SELECT creator_uuid::text AS creator_uuid FROM units WHERE uuid = $1', [unitUuid]);
    if (!rows[0]) throw new NotFoundError('Unit not found');
    if (rows[0].creator_uuid !== userUuid) throw new NoAccessError('Agent is not the creator of this entity');
  }

  async get(userUuid: string, unitUuid: string): Promise<UnitAlertSettings> {
    await this.requireUnitCreator(userUuid, unitUuid);
    const { rows } = await this.pg.query<{ min_level: UnitLogLevel | null; update_datetime: Date }>('SELECT min_level, update_datetime FROM alert_unit_settings WHERE unit_uuid = $1', [unitUuid]);
    return { unit_uuid: unitUuid, min_level: rows[0]?.min_level ?? null, update_datetime: rows[0]?.update_datetime.toISOString() ?? null };
  }

  /** Returns the new settings and whether the level changed (the rule must then be reconciled). */
  async setLevel(userUuid: string, unitUuid: string, level: UnitLogLevel | null): Promise<{ settings: UnitAlertSettings; changed: boolean }> {
    await this.requireUnitCreator(userUuid, unitUuid);
    const before = await this.pg.query<{ min_level: string | null }>('SELECT min_level FROM alert_unit_settings WHERE unit_uuid = $1', [unitUuid]);
    const previous = before.rows[0]?.min_level ?? null;
    const { rows } = await this.pg.query<{ update_datetime: Date }>(
      `INSERT INTO alert_unit_settings (unit_uuid, min_level, update_datetime) VALUES ($1, $2, now())
       ON CONFLICT (unit_uuid) DO UPDATE SET min_level = EXCLUDED.min_level, update_datetime = now() RETURNING update_datetime`,
      [unitUuid, level],
    );
    return { settings: { unit_uuid: unitUuid, min_level: level, update_datetime: rows[0]!.update_datetime.toISOString() }, changed: previous !== level };
  }

  async listMutes(userUuid: string): Promise<MuteWindow[]> {
    const { rows } = await this.pg.query<{ uuid: string; unit_uuid: string | null; starts_at: Date; ends_at: Date }>(
      'SELECT uuid::text AS uuid, unit_uuid::text AS unit_uuid, starts_at, ends_at FROM alert_mute_windows WHERE user_uuid = $1 AND ends_at > now() ORDER BY starts_at',
      [userUuid],
    );
    return rows.map((r) => ({ uuid: r.uuid, unit_uuid: r.unit_uuid, starts_at: r.starts_at.toISOString(), ends_at: r.ends_at.toISOString() }));
  }

  async addMute(userUuid: string, input: { unit_uuid?: string | null; starts_at?: string; ends_at: string }): Promise<MuteWindow> {
    const starts = input.starts_at ? new Date(input.starts_at) : new Date();
    const ends = new Date(input.ends_at);
    if (Number.isNaN(starts.getTime()) || Number.isNaN(ends.getTime())) throw new ValidationError('starts_at and ends_at must be ISO 8601 date-times');
    if (ends <= starts) throw new ValidationError('ends_at must be after starts_at');
    if (ends.getTime() <= Date.now()) throw new ValidationError('ends_at must be in the future');
    if (input.unit_uuid) await this.requireUnitCreator(userUuid, input.unit_uuid);
    // Expired windows are removed here, so the per-user count stays bounded.
    await this.pg.query('DELETE FROM alert_mute_windows WHERE user_uuid = $1 AND ends_at <= now()', [userUuid]);
    const uuid = randomUUID();
    const { rowCount } = await this.pg.query(
      `INSERT INTO alert_mute_windows (uuid, user_uuid, unit_uuid, starts_at, ends_at)
       SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM alert_mute_windows WHERE user_uuid = $2) < $6`,
      [uuid, userUuid, input.unit_uuid ?? null, starts, ends, MAX_MUTE_WINDOWS],
    );
    if (!rowCount) throw new ValidationError(`At most ${MAX_MUTE_WINDOWS} mute windows per user`);
    return { uuid, unit_uuid: input.unit_uuid ?? null, starts_at: starts.toISOString(), ends_at: ends.toISOString() };
  }

  async deleteMute(userUuid: string, uuid: string): Promise<void> {
    const { rowCount } = await this.pg.query('DELETE FROM alert_mute_windows WHERE uuid = $1 AND user_uuid = $2', [uuid, userUuid]);
    if (!rowCount) throw new NotFoundError('Mute window not found');
  }

  async history(userUuid: string, q: { unit_uuid?: string; state?: string; offset?: number; limit?: number }): Promise<{ count: number; alerts: AlertHistoryItem[] }> {
    const values: unknown[] = [userUuid];
    let where = 'recipient_uuid = $1';
    if (q.unit_uuid) {
      values.push(q.unit_uuid);
      where += ` AND unit_uuid = $${values.length}`;
    }
    if (q.state) {
      values.push(q.state);
      where += ` AND state = $${values.length}`;
    }
    const count = await this.pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM alert_events WHERE ${where}`, values);
    values.push(q.offset ?? 0, q.limit ?? 100);
    const { rows } = await this.pg.query<{ id: string; source: string; level: string; unit_uuid: string | null; text: string; state: string; create_datetime: Date; message_id: string | null }>(
      `SELECT id::text, source, level, unit_uuid::text AS unit_uuid, text, state, create_datetime, message_id::text
         FROM alert_events WHERE ${where} ORDER BY id DESC OFFSET $${values.length - 1} LIMIT $${values.length}`,
      values,
    );
    return {
      count: count.rows[0]!.n,
      alerts: rows.map((r) => ({ id: Number(r.id), source: r.source, level: r.level, unit_uuid: r.unit_uuid, text: r.text, state: r.state, create_datetime: r.create_datetime.toISOString(), message_id: r.message_id === null ? null : Number(r.message_id) })),
    };
  }
}
