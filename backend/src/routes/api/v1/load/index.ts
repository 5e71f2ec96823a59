/**
 * Load REST (issue 13, docs/LOAD.md "REST"): `<prefix>/load/...`
 *
 *   GET  /units/:uuid            a unit: limit, latest MPS, cut-off state, totals and series over a range (creator, admin, the unit itself)
 *   GET  /repos/:uuid            a repo: average MPS per unit (any user who may see it); per-unit rows for its creator and admins
 *   GET  /users/:uuid            a user's units: totals per unit, limit (the user, admins)
 *   PUT  /users/:uuid/limit      admin: per-user MPS limit override ({mps_limit: number | null})
 *   GET  /top                    admin: top units by messages over a range
 *   GET  /instance               admin: sampler status, totals, units over their limit, active cut-offs
 *   GET  /decisions              admin: cut-off decisions (newest first)
 *   POST /units/:uuid/cutoff/lift    admin: lifts an active cut-off
 *   POST /units/:uuid/cutoff/extend  admin: new end of an active cut-off ({until} or {seconds})
 *   GET  /nodes                  admin: the latest node state of every process (backend replicas, ingests, broker nodes)
 *   GET  /nodes/history          admin: node-state samples of one process over a range
 *   GET  /errors                 admin: top errors over a range (count in the range, per process and in total)
 *   GET  /clients                admin: "which device floods": connected clients by messages received per second
 *                                since they connected (the broker's per-connection `recv_msg`; one listing, at most 100 000 clients)
 *
 * Ranges: `from`/`to` (ISO 8601; default the last hour, at most 5 years), `granularity`
 * (minute | hour | day; default by range length). Bad input is a 422 and changes nothing.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { DateTime, Nullable, Uuid, UuidParams } from '../../../../schemas/common.js';
import { NoAccessError, ValidationError } from '../../../../errors.js';
import { requireAgent } from '../../../../services/access.js';
import type { Agent } from '../../../../plugins/auth.js';
import { loadSeries, unitTotals, type Granularity } from '../../../../load/load-store.js';

const tags = ['load'];
const MAX_RANGE_MS = 5 * 366 * 86_400_000;
const RangeQuery = Type.Object({
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  granularity: Type.Optional(Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day')])),
});
const TopQuery = Type.Object({ ...RangeQuery.properties, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20 })) });
const DecisionsQuery = Type.Object({ unit_uuid: Type.Optional(Uuid), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) });
const NodeHistoryQuery = Type.Object({ process: Type.String({ minLength: 1, maxLength: 200 }), from: Type.Optional(DateTime), to: Type.Optional(DateTime) });
const NODE_COLUMNS = `process, role, host, pid, version, toUInt32(ts) AS ts, uptime_seconds, cpu_percent, rss_bytes, heap_used_bytes, heap_total_bytes,
  event_loop_delay_mean_ms, event_loop_delay_p99_ms, messages, disk_free_bytes`;
const ErrorsQuery = Type.Object({
  ...RangeQuery.properties,
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 20 })),
  process: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  kind: Type.Optional(Type.Union([Type.Literal('error'), Type.Literal('crash')])),
});
const ClientsQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20 })) });
const MAX_LISTED_CLIENTS = 100_000;
const LimitBody = Type.Object({ mps_limit: Nullable(Type.Number({ minimum: 0, maximum: 1_000_000 })) }, { additionalProperties: false });
const ExtendBody = Type.Object(
  { until: Type.Optional(DateTime), seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 366 * 86_400 })) },
  { additionalProperties: false },
);

interface Range {
  from: number;
  to: number;
  granularity: Granularity;
}

function range(query: { from?: string; to?: string; granularity?: Granularity }): Range {
  const to = query.to ? Date.parse(query.to) : Date.now();
  const from = query.from ? Date.parse(query.from) : to - 3_600_000;
  if (!Number.isFinite(from) || !Number.isFinite(to)) throw new ValidationError('from and to must be ISO 8601 date-times');
  if (from >= to) throw new ValidationError('from must be before to');
  if (to - from > MAX_RANGE_MS) throw new ValidationError('the range may cover at most 5 years');
  const span = to - from;
  const granularity = query.granularity ?? (span <= 6 * 3_600_000 ? 'minute' : span <= 14 * 86_400_000 ? 'hour' : 'day');
  const points = span / (granularity === 'minute' ? 60_000 : granularity === 'hour' ? 3_600_000 : 86_400_000);
  if (points > 10_000) throw new ValidationError(`${granularity} granularity over this range gives more than 10000 points; choose a coarser one`);
  return { from: Math.floor(from / 1000), to: Math.floor(to / 1000), granularity };
}

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

function isAdmin(agent: Agent): boolean {
  return agent.type === 'User' && agent.role === 'Admin';
}

function requireAdmin(agent: Agent): void {
  requireAgent(agent, ['User'], ['Admin']);
}

const loadRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { load } = app;

  async function unitRow(uuid: string): Promise<{ uuid: string; name: string; creator_uuid: string | null; repo_uuid: string | null }> {
    const { rows } = await app.pg.query<{ uuid: string; name: string; creator_uuid: string | null; repo_uuid: string | null }>(
      'SELECT uuid::text, name, creator_uuid::text, repo_uuid::text FROM units WHERE uuid = $1',
      [uuid],
    );
    if (!rows[0]) throw new ValidationError(`Unit ${uuid} does not exist`);
    return rows[0];
  }

  function totalsOf(rows: Array<{ messages: number; peak_minute_messages: number }>, seconds: number) {
    const messages = rows.reduce((sum, r) => sum + r.messages, 0);
    return { messages, avg_mps: seconds > 0 ? messages / seconds : 0, peak_mps: rows.reduce((max, r) => Math.max(max, r.peak_minute_messages / 60), 0) };
  }

  app.get('/units/:uuid', { schema: { tags, summary: 'Load of a unit', params: UuidParams, querystring: RangeQuery } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit', 'Backend']);
    const unit = await unitRow(request.params.uuid);
    if (agent.type === 'User' && !isAdmin(agent) && unit.creator_uuid !== agent.uuid) throw new NoAccessError('Only the creator of the unit or an admin can read its load');
    if (agent.type === 'Unit' && agent.uuid !== unit.uuid) throw new NoAccessError('A unit can read only its own load');
    const r = range(request.query);
    const filter = { creatorUuid: unit.creator_uuid ?? undefined, unitUuids: [unit.uuid] };
    const [rows, series, cutoff, limit] = await Promise.all([
      unitTotals(app.clickhouse, filter, r.from, r.to),
      loadSeries(app.clickhouse, filter, r.granularity, r.from, r.to),
      load.cutoff.state(unit.uuid),
      unit.creator_uuid ? load.limits.forUser(unit.creator_uuid) : Promise.resolve({ mps: null, source: 'instance' }),
    ]);
    const latest = load.sampler.latest;
    const current = latest?.loads.get(unit.uuid);
    const since = load.cutoff.overSince.get(unit.uuid);
    return {
      unit_uuid: unit.uuid,
      name: unit.name,
      repo_uuid: unit.repo_uuid,
      from: iso(r.from),
      to: iso(r.to),
      granularity: r.granularity,
      limit: { mps: limit.mps, source: limit.source, factor: load.settings.factor, window_seconds: load.settings.windowSeconds },
      current: latest && current ? { mps: current.mps, messages: current.messages, at: new Date(latest.takenAt).toISOString(), interval_ms: latest.elapsedMs } : null,
      over_limit_since: since === undefined ? null : new Date(since).toISOString(),
      cutoff,
      totals: totalsOf(rows, r.to - r.from),
      series: series.map((p) => ({ start: iso(p.start), messages: p.messages, mps: p.mps })),
    };
  });

  app.get('/repos/:uuid', { schema: { tags, summary: 'Load of a repo: average MPS per unit', params: UuidParams, querystring: RangeQuery } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Backend']);
    const { rows: repos } = await app.pg.query<{ creator_uuid: string | null; visibility_level: string; units: number }>(
      'SELECT creator_uuid::text, visibility_level, (SELECT count(*)::int FROM units WHERE repo_uuid = r.uuid) AS units FROM repos r WHERE uuid = $1',
      [request.params.uuid],
    );
    const repo = repos[0];
    if (!repo) throw new ValidationError(`Repo ${request.params.uuid} does not exist`);
    const owner = agent.type === 'Backend' || isAdmin(agent) || (agent.type === 'User' && repo.creator_uuid === agent.uuid);
    if (!owner && repo.visibility_level !== 'Public') throw new NoAccessError('Only the creator of a non-public repo or an admin can read its load');
    const r = range(request.query);
    const rows = await unitTotals(app.clickhouse, { repoUuid: request.params.uuid }, r.from, r.to);
    const seconds = r.to - r.from;
    const totals = totalsOf(rows, seconds);
    return {
      repo_uuid: request.params.uuid,
      from: iso(r.from),
      to: iso(r.to),
      unit_count: repo.units,
      units_with_load: rows.length,
      messages: totals.messages,
      // The repo's load metric: the average MPS of one of its units (units without traffic count as zero).
      avg_mps_per_unit: repo.units > 0 ? totals.avg_mps / repo.units : 0,
      avg_mps_per_active_unit: rows.length > 0 ? totals.avg_mps / rows.length : 0,
      peak_mps: totals.peak_mps,
      units: owner ? rows.map((row) => ({ unit_uuid: row.unit_uuid, messages: row.messages, avg_mps: row.messages / seconds, peak_mps: row.peak_minute_messages / 60 })) : null,
    };
  });

  app.get('/users/:uuid', { schema: { tags, summary: "Load of a user's units", params: UuidParams, querystring: RangeQuery } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Backend']);
    if (agent.type === 'User' && !isAdmin(agent) && agent.uuid !== request.params.uuid) throw new NoAccessError('Only the user or an admin can read this load');
    const r = range(request.query);
    const [rows, limit, override] = await Promise.all([
      unitTotals(app.clickhouse, { creatorUuid: request.params.uuid }, r.from, r.to),
      load.limits.forUser(request.params.uuid),
      load.limits.userOverride(request.params.uuid),
    ]);
    const seconds = r.to - r.from;
    return {
      user_uuid: request.params.uuid,
      from: iso(r.from),
      to: iso(r.to),
      limit: { mps: limit.mps, source: limit.source, user_override: override, instance_default: load.settings.instanceMps || null },
      totals: totalsOf(rows, seconds),
      units: rows.map((row) => ({ unit_uuid: row.unit_uuid, repo_uuid: row.repo_uuid, messages: row.messages, avg_mps: row.messages / seconds, peak_mps: row.peak_minute_messages / 60 })),
    };
  });

  app.put('/users/:uuid/limit', { schema: { tags, summary: 'Admin: per-user MPS limit override (null removes it)', params: UuidParams, body: LimitBody } }, async (request) => {
    const agent = await request.agent();
    requireAdmin(agent);
    const { rowCount } = await app.pg.query('SELECT 1 FROM users WHERE uuid = $1', [request.params.uuid]);
    if (!rowCount) throw new ValidationError(`User ${request.params.uuid} does not exist`);
    await load.limits.setUserLimit(request.params.uuid, request.body.mps_limit, agent.uuid);
    const limit = await load.limits.forUser(request.params.uuid);
    return { user_uuid: request.params.uuid, user_override: request.body.mps_limit, limit };
  });

  app.get('/top', { schema: { tags, summary: 'Admin: top units by messages', querystring: TopQuery } }, async (request) => {
    requireAdmin(await request.agent());
    const r = range(request.query);
    const rows = await unitTotals(app.clickhouse, {}, r.from, r.to, request.query.limit ?? 20);
    const seconds = r.to - r.from;
    return { from: iso(r.from), to: iso(r.to), units: rows.map((row) => ({ ...row, avg_mps: row.messages / seconds, peak_mps: row.peak_minute_messages / 60 })) };
  });

  app.get('/instance', { schema: { tags, summary: 'Admin: the instance load view' } }, async (request) => {
    requireAdmin(await request.agent());
    const to = Math.floor(Date.now() / 1000);
    const [top, cutoffs] = await Promise.all([
      unitTotals(app.clickhouse, {}, to - 3600, to, 10),
      app.pg.query(
        `SELECT unit_uuid::text, step, reason, mps, limit_mps, limit_source, to_char(cut_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS cut_at,
                to_char(until, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS until FROM load_unit_cutoffs WHERE active ORDER BY until LIMIT 1000`,
      ),
    ]);
    const latest = load.sampler.latest;
    let total = 0;
    let busiest: Array<{ unit_uuid: string; mps: number }> = [];
    if (latest) {
      for (const [unit, l] of latest.loads) {
        total += l.messages;
        if (l.mps > 0) busiest.push({ unit_uuid: unit, mps: l.mps });
      }
      busiest = busiest.sort((a, b) => b.mps - a.mps).slice(0, 10);
    }
    return {
      sampler: {
        this_replica_samples: load.sampler.isLeader,
        interval_ms: load.settings.intervalMs,
        broker_api: load.client() !== null,
        last_sample_at: latest ? new Date(latest.takenAt).toISOString() : null,
        units: latest?.units.size ?? null,
        mps: latest && latest.elapsedMs > 0 ? total / (latest.elapsedMs / 1000) : null,
        busiest_now: busiest,
      },
      limits: { instance_default_mps: load.settings.instanceMps || null, factor: load.settings.factor, window_seconds: load.settings.windowSeconds, ladder_seconds: load.settings.ladderSeconds, reset_seconds: load.settings.resetSeconds, cutoff_enabled: load.settings.enabled },
      over_limit_now: [...load.cutoff.overSince].map(([unit, since]) => ({ unit_uuid: unit, since: new Date(since).toISOString() })),
      active_cutoffs: cutoffs.rows,
      top_last_hour: top.map((row) => ({ ...row, avg_mps: row.messages / 3600, peak_mps: row.peak_minute_messages / 60 })),
    };
  });

  app.get('/decisions', { schema: { tags, summary: 'Admin: cut-off decisions, newest first', querystring: DecisionsQuery } }, async (request) => {
    requireAdmin(await request.agent());
    const values: unknown[] = [request.query.limit ?? 100];
    let where = '';
    if (request.query.unit_uuid) {
      values.push(request.query.unit_uuid);
      where = 'WHERE unit_uuid = $2';
    }
    const { rows } = await app.pg.query(
      `SELECT id::text, unit_uuid::text, creator_uuid::text, decision, step, mps, limit_mps, limit_source,
              to_char(until, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS until, actor, detail,
              to_char(create_datetime, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
         FROM load_decisions ${where} ORDER BY create_datetime DESC, id DESC LIMIT $1`,
      values,
    );
    return { decisions: rows };
  });

  const nodeRow = (row: Record<string, unknown>) => ({ ...row, ts: iso(Number(row.ts)), rss_bytes: Number(row.rss_bytes), heap_used_bytes: Number(row.heap_used_bytes), heap_total_bytes: Number(row.heap_total_bytes) });

  app.get('/nodes', { schema: { tags, summary: 'Admin: the latest node state of every process' } }, async (request) => {
    requireAdmin(await request.agent());
    // Processes that reported within three intervals (at least 5 minutes) are current.
    const seconds = Math.max(300, 3 * app.config.load.nodeStateIntervalSeconds);
    const result = await app.clickhouse.query({
      query: `SELECT ${NODE_COLUMNS} FROM node_state WHERE ts >= now() - toIntervalSecond({seconds:UInt32}) ORDER BY ts DESC LIMIT 1 BY process LIMIT 1000`,
      query_params: { seconds },
      format: 'JSONEachRow',
    });
    const rows = (await result.json<Record<string, unknown>>()).map(nodeRow);
    const self = app.nodeState.latest;
    return { this_process: app.nodeState.collector.process, interval_seconds: app.config.load.nodeStateIntervalSeconds, nodes: rows, this_process_latest: self ? nodeRow({ ...self }) : null };
  });

  app.get('/nodes/history', { schema: { tags, summary: 'Admin: node-state samples of one process', querystring: NodeHistoryQuery } }, async (request) => {
    requireAdmin(await request.agent());
    const r = range(request.query);
    const result = await app.clickhouse.query({
      query: `SELECT ${NODE_COLUMNS} FROM node_state WHERE process = {process:String} AND ts >= toDateTime({from:UInt32}) AND ts < toDateTime({to:UInt32}) ORDER BY ts LIMIT 10000`,
      query_params: { process: request.query.process, from: r.from, to: r.to },
      format: 'JSONEachRow',
    });
    return { process: request.query.process, from: iso(r.from), to: iso(r.to), samples: (await result.json<Record<string, unknown>>()).map(nodeRow) };
  });

  app.get('/errors', { schema: { tags, summary: 'Admin: top errors over a range (default the last 24 h)', querystring: ErrorsQuery } }, async (request) => {
    requireAdmin(await request.agent());
    const r = range({ ...request.query, from: request.query.from ?? new Date(Date.parse(request.query.to ?? new Date().toISOString()) - 86_400_000).toISOString(), granularity: 'day' });
    const values: unknown[] = [r.from, r.to, request.query.limit ?? 20];
    const filters: string[] = [];
    if (request.query.process) {
      values.push(request.query.process);
      filters.push(`h.process = $${values.length}`);
    }
    if (request.query.kind) {
      values.push(request.query.kind);
      filters.push(`f.kind = $${values.length}`);
    }
    const { rows } = await app.pg.query(
      `WITH counted AS (
         SELECT h.fingerprint, h.process, sum(h.count)::bigint AS count
           FROM error_counts_hourly h JOIN error_fingerprints f ON f.fingerprint = h.fingerprint AND f.process = h.process
          WHERE h.hour >= date_trunc('hour', to_timestamp($1) AT TIME ZONE 'utc') AND h.hour < to_timestamp($2) AT TIME ZONE 'utc'
                ${filters.length ? `AND ${filters.join(' AND ')}` : ''}
          GROUP BY h.fingerprint, h.process)
       SELECT c.fingerprint, max(f.kind) AS kind, max(f.level) AS level, max(f.message) AS message, max(f.sample) AS sample, max(f.frames) AS frames,
              sum(c.count)::text AS count, sum(f.count)::text AS total_count,
              to_char(min(f.first_seen), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_seen, to_char(max(f.last_seen), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_seen,
              json_agg(json_build_object('process', c.process, 'count', c.count, 'total_count', f.count) ORDER BY c.count DESC) AS processes
         FROM counted c JOIN error_fingerprints f ON f.fingerprint = c.fingerprint AND f.process = c.process
        GROUP BY c.fingerprint ORDER BY sum(c.count) DESC, c.fingerprint LIMIT $3`,
      values,
    );
    const totals = await app.pg.query<{ process: string; count: string }>(
      `SELECT process, sum(count)::text AS count FROM error_counts_hourly
        WHERE hour >= date_trunc('hour', to_timestamp($1) AT TIME ZONE 'utc') AND hour < to_timestamp($2) AT TIME ZONE 'utc' GROUP BY process ORDER BY 2 DESC LIMIT 1000`,
      [r.from, r.to],
    );
    return {
      from: iso(r.from),
      to: iso(r.to),
      total: totals.rows.reduce((sum, row) => sum + Number(row.count), 0),
      per_process: totals.rows.map((row) => ({ process: row.process, count: Number(row.count) })),
      errors: rows.map((row: Record<string, unknown>) => ({ ...row, count: Number(row.count), total_count: Number(row.total_count), frames: String(row.frames ?? '').split('\n').filter(Boolean) })),
    };
  });

  app.get('/clients', { schema: { tags, summary: 'Admin: connected clients by messages received per second', querystring: ClientsQuery } }, async (request) => {
    requireAdmin(await request.agent());
    const client = load.client();
    if (!client) throw new ValidationError('no broker management API is configured (PU_EMQX_API_KEY / PU_EMQX_API_SECRET)');
    const now = Date.now();
    // The username of a unit is its token: never requested, never shown.
    const top: Array<{ clientid: string; unit_uuid: string | null; connected_at: string; recv_msg: number; send_msg: number; recv_mps: number }> = [];
    let listed = 0;
    for await (const info of client.iterateClients({ fields: ['clientid', 'connected_at', 'recv_msg', 'send_msg'], limit: 10_000 })) {
      listed += 1;
      const connectedAt = Date.parse(String(info.connected_at ?? ''));
      const recv = Number((info as unknown as Record<string, unknown>).recv_msg ?? 0);
      const seconds = Number.isFinite(connectedAt) ? Math.max(1, (now - connectedAt) / 1000) : Number.NaN;
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i.exec(info.clientid)?.[0]?.toLowerCase() ?? null;
      top.push({ clientid: info.clientid, unit_uuid: uuid, connected_at: String(info.connected_at ?? ''), recv_msg: recv, send_msg: Number((info as unknown as Record<string, unknown>).send_msg ?? 0), recv_mps: Number.isFinite(seconds) ? recv / seconds : 0 });
      if (top.length > 4 * (request.query.limit ?? 20) + 1000) top.sort((a, b) => b.recv_mps - a.recv_mps).splice(request.query.limit ?? 20);
      if (listed >= MAX_LISTED_CLIENTS) break;
    }
    top.sort((a, b) => b.recv_mps - a.recv_mps);
    return { listed, truncated: listed >= MAX_LISTED_CLIENTS, clients: top.slice(0, request.query.limit ?? 20) };
  });

  app.post('/units/:uuid/cutoff/lift', { schema: { tags, summary: 'Admin: lift an active cut-off', params: UuidParams } }, async (request) => {
    const agent = await request.agent();
    requireAdmin(agent);
    await unitRow(request.params.uuid);
    const state = await load.cutoff.lift(request.params.uuid, agent.uuid);
    if (!state) throw new ValidationError(`Unit ${request.params.uuid} is not cut off`);
    return state;
  });

  app.post('/units/:uuid/cutoff/extend', { schema: { tags, summary: 'Admin: change the end of an active cut-off', params: UuidParams, body: ExtendBody } }, async (request) => {
    const agent = await request.agent();
    requireAdmin(agent);
    await unitRow(request.params.uuid);
    const { until, seconds } = request.body;
    if ((until === undefined) === (seconds === undefined)) throw new ValidationError('give exactly one of until and seconds');
    const untilMs = until !== undefined ? Date.parse(until) : Date.now() + (seconds as number) * 1000;
    if (!Number.isFinite(untilMs) || untilMs <= Date.now()) throw new ValidationError('until must be in the future');
    if (untilMs > Date.now() + 366 * 86_400_000) throw new ValidationError('until may be at most one year ahead');
    const state = await load.cutoff.extend(request.params.uuid, untilMs, agent.uuid);
    if (!state) throw new ValidationError(`Unit ${request.params.uuid} is not cut off`);
    return state;
  });
};

export default loadRoutes;
