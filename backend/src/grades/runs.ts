/**
 * Stored load checks: a run and its iterations, chained as they are recorded (report.ts). At
 * most one run is `running` (a partial unique index); a run left `running` by a process that died
 * is marked failed at the next start.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { canonicalJson } from './canonical.js';
import { chainHash, genesisHash, type ChainedIteration, type GradeSection, type IterationBody } from './report.js';

export class GradeRunConflictError extends Error {}

export interface RunSummary {
  uuid: string;
  status: string;
  started_at: string;
  finished_at: string | null;
  grade_mps: number | null;
  stop_reason: string | null;
  parameters: Record<string, unknown>;
  iterations: ChainedIteration[];
}

export class GradeRuns {
  constructor(private readonly pg: Pool) {}

  async start(parameters: Record<string, unknown>, creatorUuid: string | null): Promise<{ uuid: string; startedAt: string; genesis: string }> {
    const uuid = randomUUID();
    const startedAt = new Date().toISOString();
    const genesis = genesisHash({ run_uuid: uuid, started_at: startedAt, parameters });
    try {
      await this.pg.query(
        `INSERT INTO grade_runs (uuid, status, parameters, started_at, genesis_hash, creator_uuid) VALUES ($1, 'running', $2, $3::timestamptz AT TIME ZONE 'utc', $4, $5)`,
        [uuid, canonicalJson(parameters), startedAt, genesis, creatorUuid],
      );
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new GradeRunConflictError('a load check is already running');
      throw err;
    }
    return { uuid, startedAt, genesis };
  }

  /** Appends the next iteration of a run, chained to the previous one. */
  async append(runUuid: string, body: IterationBody): Promise<ChainedIteration> {
    const { rows } = await this.pg.query(
      `SELECT r.genesis_hash, (SELECT hash FROM grade_iterations WHERE run_uuid = r.uuid ORDER BY index DESC LIMIT 1) AS last_hash,
              (SELECT count(*)::int FROM grade_iterations WHERE run_uuid = r.uuid) AS n
         FROM grade_runs r WHERE r.uuid = $1`,
      [runUuid],
    );
    const run = rows[0];
    if (!run) throw new Error(`no load check ${runUuid}`);
    const indexed = { ...body, index: run.n as number };
    const prev = (run.last_hash as string | null) ?? (run.genesis_hash as string);
    const hash = chainHash(prev, indexed);
    await this.pg.query('INSERT INTO grade_iterations (run_uuid, index, body, prev_hash, hash) VALUES ($1, $2, $3, $4, $5)', [runUuid, indexed.index, canonicalJson(indexed), prev, hash]);
    return { ...indexed, prev_hash: prev, hash };
  }

  async finish(runUuid: string, status: 'finished' | 'failed' | 'cancelled', gradeMps: number | null, stopReason: string): Promise<void> {
    await this.pg.query(
      `UPDATE grade_runs SET status = $2, finished_at = now() AT TIME ZONE 'utc', grade_mps = $3, stop_reason = $4 WHERE uuid = $1 AND status = 'running'`,
      [runUuid, status, gradeMps, stopReason],
    );
  }

  /** Runs left `running` by a process that stopped (called at start, when no check runs here). */
  async failAbandoned(): Promise<number> {
    const { rowCount } = await this.pg.query(`UPDATE grade_runs SET status = 'failed', finished_at = now() AT TIME ZONE 'utc', stop_reason = 'the backend stopped during the check' WHERE status = 'running'`);
    return rowCount ?? 0;
  }

  async get(uuid: string): Promise<RunSummary | null> {
    const { rows } = await this.pg.query(
      `SELECT uuid, status, parameters, started_at AT TIME ZONE 'utc' AS started_at, finished_at AT TIME ZONE 'utc' AS finished_at, grade_mps, stop_reason, genesis_hash
         FROM grade_runs WHERE uuid = $1`,
      [uuid],
    );
    const run = rows[0];
    if (!run) return null;
    const its = await this.pg.query('SELECT body, prev_hash, hash FROM grade_iterations WHERE run_uuid = $1 ORDER BY index', [uuid]);
    return {
      uuid: run.uuid,
      status: run.status,
      started_at: (run.started_at as Date).toISOString(),
      finished_at: run.finished_at ? (run.finished_at as Date).toISOString() : null,
      grade_mps: run.grade_mps,
      stop_reason: run.stop_reason,
      parameters: JSON.parse(run.parameters),
      iterations: its.rows.map((r) => ({ ...(JSON.parse(r.body) as IterationBody), prev_hash: r.prev_hash, hash: r.hash })),
    };
  }

  async list(limit = 50): Promise<Array<Omit<RunSummary, 'iterations' | 'parameters'>>> {
    const { rows } = await this.pg.query(
      `SELECT uuid, status, started_at AT TIME ZONE 'utc' AS started_at, finished_at AT TIME ZONE 'utc' AS finished_at, grade_mps, stop_reason
         FROM grade_runs ORDER BY started_at DESC LIMIT $1`,
      [limit],
    );
    return rows.map((run) => ({
      uuid: run.uuid,
      status: run.status,
      started_at: (run.started_at as Date).toISOString(),
      finished_at: run.finished_at ? (run.finished_at as Date).toISOString() : null,
      grade_mps: run.grade_mps,
      stop_reason: run.stop_reason,
    }));
  }

  /** The grade section of the report: the latest finished run, with its iterations. */
  async latestGrade(): Promise<GradeSection | null> {
    const { rows } = await this.pg.query(`SELECT uuid, genesis_hash FROM grade_runs WHERE status = 'finished' ORDER BY finished_at DESC LIMIT 1`);
    if (!rows[0]) return null;
    const run = await this.get(rows[0].uuid);
    if (!run) return null;
    const genesis = rows[0].genesis_hash as string;
    return {
      run_uuid: run.uuid,
      started_at: run.started_at,
      parameters: run.parameters,
      finished_at: run.finished_at,
      status: run.status,
      mps: run.grade_mps,
      stop_reason: run.stop_reason,
      genesis_hash: genesis,
      iterations: run.iterations,
      chain_head: run.iterations.at(-1)?.hash ?? genesis,
    };
  }
}
