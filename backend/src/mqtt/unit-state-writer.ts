/**
 * Batched writer of accepted unit states into Postgres (reference §2.3 steps 2–5), and the
 * firmware-update status resolution (§7.3 "Status tracking").
 *
 * The consumer has already throttled states per unit; what reaches this writer is at most one
 * state per unit per `PU_STATE_SEND_INTERVAL - 1` seconds in this process. All waiting states go
 * out in ONE `UPDATE ... FROM unnest(...)` per flush. When the database has the column
 * `units.last_state_update_datetime`, the UPDATE is conditional on it, so several replicas that
 * each accepted a state of the same unit within the interval write it only once. (The column is
 * used rather than `last_update_datetime` because log messages bump that one too: a unit that
 * logs more often than its state interval would otherwise never get its state saved.)
 */
import type { Pool } from 'pg';
import { silent, type MinimalLogger } from './logger.js';

/** Resolves the target commit of a unit (§7.3); null when it cannot be computed. */
export type TargetVersionResolver = (unitUuid: string) => Promise<string | null>;

/** The column that guards state writes across replicas (our addition to `units`). */
export const STATE_GUARD_COLUMN = 'last_state_update_datetime';

/**
 * Default target resolver: only manual units (`is_auto_update_from_repo_unit = false`) whose
 * `repo_commit` is set; auto-updated units need the repository's git data (wired by the caller).
 */
export function manualUnitTargetVersion(pg: Pool): TargetVersionResolver {
  return async (unitUuid) => {
    const { rows } = await pg.query<{ repo_commit: string | null }>(
      'SELECT repo_commit FROM units WHERE uuid = $1 AND is_auto_update_from_repo_unit = false',
      [unitUuid],
    );
    return rows[0]?.repo_commit ?? null;
  };
}

/** Reference message of a firmware update that did not report the target version in time. */
export function firmwareUpdateTimeoutMessage(stateSendInterval: number): string {
  return `422: 11: Update Error: Device firmware update time is twice as fast as ${stateSendInterval}s times`;
}

/** Whether `units` has the cross-replica guard column. */
export async function hasStateGuardColumn(pg: Pool): Promise<boolean> {
  const { rowCount } = await pg.query(
    `SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'units' AND column_name = $1`,
    [STATE_GUARD_COLUMN],
  );
  return (rowCount ?? 0) > 0;
}

export interface UnitStateWriterOptions {
  readonly pg: Pool;
  /** PU_STATE_SEND_INTERVAL in seconds. */
  readonly stateSendInterval: number;
  readonly resolveTargetVersion?: TargetVersionResolver;
  /** Use `units.last_state_update_datetime` as the cross-replica guard. */
  readonly guard: boolean;
  /** Default 200 ms. */
  readonly flushIntervalMs?: number;
  /** Waiting units that trigger an immediate flush. Default 2 000. */
  readonly flushUnits?: number;
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  readonly logger?: MinimalLogger;
}

export interface UnitStateWriterStats {
  /** Unit rows whose state was written. */
  written: number;
  /** States not written because another replica wrote one within the interval (guard). */
  guardSkipped: number;
  /** States of units that do not exist (nothing written). */
  unknownUnits: number;
  /** Waiting states. */
  pending: number;
  flushFailures: number;
  firmwareSuccess: number;
  firmwareError: number;
}

interface PendingState {
  readonly unitUuid: string;
  readonly stateText: string;
  readonly commitVersion: string | null;
  readonly acceptedAtMs: number;
}

export class UnitStateWriter {
  readonly #pg: Pool;
  readonly #interval: number;
  readonly #resolve: TargetVersionResolver;
  readonly #guard: boolean;
  readonly #flushUnits: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #logger: MinimalLogger;
  #pending = new Map<string, PendingState>();
  #inFlight: Promise<void> | null = null;
  #failures = 0;
  #retryAt = 0;
  #timer: NodeJS.Timeout;
  #immediate: NodeJS.Immediate | null = null;
  #closed = false;
  readonly stats: UnitStateWriterStats = { written: 0, guardSkipped: 0, unknownUnits: 0, pending: 0, flushFailures: 0, firmwareSuccess: 0, firmwareError: 0 };

  constructor(opts: UnitStateWriterOptions) {
    this.#pg = opts.pg;
    this.#interval = opts.stateSendInterval;
    this.#resolve = opts.resolveTargetVersion ?? manualUnitTargetVersion(opts.pg);
    this.#guard = opts.guard;
    this.#flushUnits = opts.flushUnits ?? 2_000;
    this.#retryBaseMs = opts.retryBaseMs ?? 500;
    this.#retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.#logger = opts.logger ?? silent;
    this.#timer = setInterval(() => this.#kick(), opts.flushIntervalMs ?? 200);
    this.#timer.unref();
  }

  /** Queues a state; a newer state of the same unit replaces a waiting one (memory ≤ one per unit). */
  submit(unitUuid: string, stateText: string, commitVersion: string | null, acceptedAtMs: number): void {
    if (this.#closed) return;
    this.#pending.set(unitUuid, { unitUuid, stateText, commitVersion, acceptedAtMs });
    this.stats.pending = this.#pending.size;
    if (this.#pending.size >= this.#flushUnits && this.#immediate === null) {
      this.#immediate = setImmediate(() => {
        this.#immediate = null;
        this.#kick();
      });
    }
  }

  #kick(): void {
    if (this.#inFlight || this.#pending.size === 0 || Date.now() < this.#retryAt) return;
    this.#inFlight = this.#write()
      .catch((err: unknown) => this.#logger.error({ err: err instanceof Error ? err.message : String(err) }, 'unit state flush failed unexpectedly'))
      .finally(() => {
        this.#inFlight = null;
      });
  }

  async #write(): Promise<void> {
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    this.stats.pending = 0;
    const throttleSeconds = Math.max(0, this.#interval - 1);
    const params: unknown[] = [batch.map((s) => s.unitUuid), batch.map((s) => s.stateText), batch.map((s) => s.commitVersion), batch.map((s) => s.acceptedAtMs)];
    // Accept times come from the consumer's throttle, so the SQL guard and the in-memory
    // throttle measure the same gaps (a small tolerance absorbs float rounding).
    const sql = this.#guard
      ? `UPDATE units u
            SET unit_state_dict = v.state,
                current_commit_version = v.commit,
                last_update_datetime = (now() AT TIME ZONE 'utc'),
                ${STATE_GUARD_COLUMN} = (to_timestamp(v.accepted_ms / 1000.0) AT TIME ZONE 'utc')
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[]) AS v(uuid, state, commit, accepted_ms)
          WHERE u.uuid = v.uuid
            AND (u.${STATE_GUARD_COLUMN} IS NULL
                 OR u.${STATE_GUARD_COLUMN} <= (to_timestamp(v.accepted_ms / 1000.0) AT TIME ZONE 'utc') - make_interval(secs => $5::float8))
      RETURNING u.uuid::text AS uuid, u.firmware_update_status AS status, v.commit AS commit`
      : `UPDATE units u
            SET unit_state_dict = v.state,
                current_commit_version = v.commit,
                last_update_datetime = (now() AT TIME ZONE 'utc')
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[]) AS v(uuid, state, commit, accepted_ms)
          WHERE u.uuid = v.uuid
      RETURNING u.uuid::text AS uuid, u.firmware_update_status AS status, v.commit AS commit`;
    if (this.#guard) params.push(Math.max(0, throttleSeconds - 0.01));
    let rows: Array<{ uuid: string; status: string | null; commit: string | null }>;
    try {
      rows = (await this.#pg.query<{ uuid: string; status: string | null; commit: string | null }>(sql, params)).rows;
      this.#failures = 0;
      this.#retryAt = 0;
    } catch (err) {
      this.stats.flushFailures += 1;
      this.#failures += 1;
      const delay = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** Math.min(this.#failures - 1, 16));
      this.#retryAt = Date.now() + delay;
      // Keep the states for a retry unless a newer one of the same unit arrived meanwhile.
      for (const state of batch) if (!this.#pending.has(state.unitUuid)) this.#pending.set(state.unitUuid, state);
      this.stats.pending = this.#pending.size;
      this.#logger.warn({ err: err instanceof Error ? err.message : String(err), units: batch.length, retryInMs: delay }, 'unit state write failed; retrying');
      return;
    }
    this.stats.written += rows.length;
    if (rows.length < batch.length) {
      if (this.#guard) {
        // Split "unknown unit" from "guard refused" only when something was not written.
        const written = new Set(rows.map((r) => r.uuid));
        const missing = batch.filter((s) => !written.has(s.unitUuid)).map((s) => s.unitUuid);
        const { rows: existing } = await this.#pg
          .query<{ n: number }>('SELECT count(*)::int AS n FROM units WHERE uuid = ANY($1::uuid[])', [missing])
          .catch(() => ({ rows: [{ n: missing.length }] }));
        const present = existing[0]?.n ?? 0;
        this.stats.guardSkipped += present;
        this.stats.unknownUnits += missing.length - present;
      } else {
        this.stats.unknownUnits += batch.length - rows.length;
      }
    }
    const requested = rows.filter((r) => r.status === 'RequestSent');
    if (requested.length > 0) await this.#resolveFirmware(requested);
  }

  /** §2.3 step 4: RequestSent → Success when the reported version is the target, Error after 2× the interval. */
  async #resolveFirmware(units: Array<{ uuid: string; commit: string | null }>): Promise<void> {
    const targets = await Promise.all(
      units.map((u) =>
        this.#resolve(u.uuid).catch((err: unknown) => {
          this.#logger.warn({ unit: u.uuid, err: err instanceof Error ? err.message : String(err) }, 'target version of the unit cannot be computed');
          return null;
        }),
      ),
    );
    try {
      const { rows } = await this.#pg.query<{ status: string }>(
        `UPDATE units u
            SET firmware_update_status = CASE WHEN v.target IS NOT NULL AND v.reported = v.target THEN 'Success' ELSE 'Error' END,
                firmware_update_error = CASE WHEN v.target IS NOT NULL AND v.reported = v.target THEN NULL ELSE $4 END,
                last_firmware_update_datetime = NULL
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(uuid, reported, target)
          WHERE u.uuid = v.uuid
            AND u.firmware_update_status = 'RequestSent'
            AND ((v.target IS NOT NULL AND v.reported = v.target)
                 OR u.last_firmware_update_datetime IS NULL
                 OR u.last_firmware_update_datetime < (now() AT TIME ZONE 'utc') - make_interval(secs => $5::float8))
      RETURNING u.firmware_update_status AS status`,
        [units.map((u) => u.uuid), units.map((u) => u.commit), targets, firmwareUpdateTimeoutMessage(this.#interval), 2 * this.#interval],
      );
      for (const row of rows) {
        if (row.status === 'Success') this.stats.firmwareSuccess += 1;
        else this.stats.firmwareError += 1;
      }
    } catch (err) {
      // The next accepted state retries the resolution.
      this.#logger.warn({ err: err instanceof Error ? err.message : String(err), units: units.length }, 'firmware update status resolution failed');
    }
  }

  /** Writes every waiting state now (retrying until `timeoutMs`). */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#inFlight) {
        // A finished batch may start the next one at once: wait until nothing is in flight.
        await this.#inFlight;
        continue;
      }
      if (this.#pending.size === 0 || Date.now() >= deadline) break;
      const wait = this.#retryAt - Date.now();
      if (wait > 0) await new Promise<void>((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))).unref());
      this.#retryAt = 0;
      this.#kick();
    }
    return this.#pending.size === 0;
  }

  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    const done = await this.flush(timeoutMs);
    if (!done) this.#logger.error({ lostStates: this.#pending.size }, 'unit states could not be written before shutdown');
  }
}
