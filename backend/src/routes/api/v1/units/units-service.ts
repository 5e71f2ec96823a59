/**
 * Units over REST (pepeunit-backend.md §5.5, §7.2–7.5): creation from a Repo's target version,
 * settings updates with "sync to version", env.json, schema.json, firmware archives, state
 * storage, commands, deletion (with the unit's ClickHouse rows).
 */
import { deleteDataPipeNodeRows } from '@pepeunit/clickhouse-schemas';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { PoolClient } from 'pg';
import { UnitError, ValidationError } from '../../../../errors.js';
import type { Agent } from '../../../../plugins/auth.js';
import { CountCache } from '../../../../services/count-cache.js';
import { checkVisibility, requireCreator, visibilityCondition, visibilityFilter } from '../../../../services/access.js';
import { nameRule, paging, searchConditions } from '../../../../services/validators.js';
import { VISIBILITY_PRIORITY, type VisibilityLevel } from '../../../../domain/enums.js';
import type { TargetVersionRead, UnitCreate, UnitRead, UnitsQuery, UnitUpdate } from '../../../../schemas/units.js';
import { isoNaive } from '../../../../schemas/common.js';
import { buildFirmware, assertTgzParameters, type ArchiveFormat, type FirmwareBuild } from '../../../../services/firmware/index.js';
import { grantPermission } from '../../../../domain/permissions.js';
import type { UnitNodeStreamRow } from '../../../../services/datapipe-events.js';
import {
  activePipeRow,
  announceDataPipeNodes,
  createUnitNodes,
  nodesAndEdgesForSchema,
  raiseNodesVisibility,
  toUnitNodeRead,
  type UnitNodeRow,
} from '../../../../domain/unit-node-rows.js';
import { loadRepoSource, RepoVersions, type RepoSource } from '../../../../domain/repo-versions.js';
import { assertEnvComplete, generatedEnv, parseEnvObject, unifiedEnv, type EnvDict } from '../../../../domain/unit-env.js';
import { buildCurrentSchema, type CurrentSchema } from '../../../../domain/unit-schema.js';
import {
  afterNodeChanges,
  applyUnitSync,
  deleteUnitLogs,
  planUnitSync,
  schemaAt,
  sendUnitCommand,
  type NodeChanges,
  type UnitCommand,
} from '../../../../domain/unit-firmware.js';
import { inTransaction, loadUnit, requireUnitOwnerOrSelf, toUnitRead, UNIT_READ_COLUMNS, type UnitReadRow, type UnitRow } from '../../../../domain/unit-rows.js';
import { preparedQuery } from '../../../../db/prepared.js';

const NAME_RULE_TEXT = 'Name is not correct: 4-20 characters from A-Z a-z 0-9 _ . -';

export class UnitsService {
  private readonly counts: CountCache;

  constructor(private readonly app: FastifyInstance) {
    this.counts = new CountCache(() => app.acl.access.generation);
  }

  private versions(source: RepoSource): RepoVersions {
    return new RepoVersions(this.app.gitStore, source);
  }

  private async versionsOf(unit: UnitRow): Promise<RepoVersions> {
    return this.versions(await loadRepoSource(this.app.pg, unit.repo_uuid));
  }

  private assertName(name: string): void {
    if (!nameRule(this.app.config).test(name)) throw new UnitError(NAME_RULE_TEXT);
  }

  private async assertNameFree(db: PoolClient | FastifyInstance['pg'], name: string, exceptUuid: string | null): Promise<void> {
    const taken = await db.query('SELECT 1 FROM units WHERE name = $1 AND ($2::uuid IS NULL OR uuid <> $2::uuid)', [name, exceptUuid]);
    if (taken.rowCount) throw new UnitError('Name is not unique');
  }

  /** Reference rule: a child (unit) may never be less restrictive than its parent (repo). */
  private assertVisibilityUnder(parent: { visibility_level: string }, parentName: string, childLevel: string, childName: string): void {
    const parentPriority = VISIBILITY_PRIORITY[parent.visibility_level as VisibilityLevel] ?? 0;
    const childPriority = VISIBILITY_PRIORITY[childLevel as VisibilityLevel] ?? 0;
    if (parentPriority > childPriority) {
      throw new ValidationError(`The visibility level of the parent object ${parentName} is lower than that of the child object ${childName}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // CRUD

  async create(agent: Extract<Agent, { type: 'User' }>, body: UnitCreate): Promise<UnitRead> {
    const { app } = this;
    this.assertName(body.name);
    await this.assertNameFree(app.pg, body.name, null);
    const source = await loadRepoSource(app.pg, body.repo_uuid);
    // Ours (quirk 2): a user can only build units from repos visible to them.
    await checkVisibility(app.pg, agent, 'Repo', source.repo);
    this.assertVisibilityUnder(source.repo, 'Repo', body.visibility_level, 'Unit');
    const versions = this.versions(source);
    const settings = {
      is_auto_update_from_repo_unit: body.is_auto_update_from_repo_unit,
      repo_branch: body.repo_branch ?? null,
      repo_commit: body.repo_commit ?? null,
      target_firmware_platform: body.target_firmware_platform ?? null,
    };
    await this.assertVersionSettings(versions, settings);
    const target = await versions.unitTarget(settings);
    await versions.firmwarePlatformLink(settings, target);
    const schema = await schemaAt(app, versions, target.commit);
    await versions.envExample(target.commit);

    const uuid = randomUUID();
    let row: UnitRow;
    let createdNodes: string[] = [];
    try {
      row = await inTransaction(app.pg, async (client) => {
        const { rows } = await client.query<UnitRow>(
          `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit,
                              target_firmware_platform, repo_branch, repo_commit, creator_uuid, repo_uuid)
           VALUES ($1, $2, $3, (now() AT TIME ZONE 'utc'), (now() AT TIME ZONE 'utc'), $4, $5, $6, $7, $8, $9) RETURNING *`,
          [uuid, body.visibility_level, body.name, settings.is_auto_update_from_repo_unit, settings.target_firmware_platform, settings.repo_branch, settings.repo_commit, agent.uuid, source.repo.uuid],
        );
        const unit = rows[0]!;
        await grantPermission(client, { type: 'User', uuid: agent.uuid }, { type: 'Unit', uuid });
        await grantPermission(client, { type: 'Unit', uuid }, { type: 'Repo', uuid: source.repo.uuid });
        await grantPermission(client, { type: 'Unit', uuid }, { type: 'Unit', uuid });
        createdNodes = await createUnitNodes(client, unit, schema, app.config);
        return unit;
      });
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new UnitError('Name is not unique');
      throw error;
    }
    await app.acl.invalidate('unit created');
    await announceDataPipeNodes(app, createdNodes, []);
    return toUnitRead(row);
  }

  /** Manual units need a branch and a commit on that branch; auto units need the repo's default branch. */
  private async assertVersionSettings(
    versions: RepoVersions,
    settings: { is_auto_update_from_repo_unit: boolean; repo_branch: string | null; repo_commit: string | null },
  ): Promise<void> {
    if (settings.is_auto_update_from_repo_unit) {
      await versions.assertBranch(versions.repo.default_branch);
      return;
    }
    if (!settings.repo_branch || !settings.repo_commit) throw new UnitError('Unit updated manually requires branch and commit to be filled out');
    await versions.assertCommitInBranch(settings.repo_branch, settings.repo_commit);
  }

  async get(agent: Agent, uuid: string): Promise<UnitRead> {
    const unit = await loadUnit(this.app.pg, uuid);
    await checkVisibility(this.app.pg, agent, 'Unit', unit);
    return toUnitRead(unit);
  }

  async update(agent: Extract<Agent, { type: 'User' }>, uuid: string, body: UnitUpdate): Promise<UnitRead> {
    const { app } = this;
    let changes: NodeChanges = { created: [], deleted: [], deletedPipes: [] };
    let updated: UnitRow;
    try {
      updated = await inTransaction(app.pg, async (client) => {
        const current = await loadUnit(client, uuid, true);
        requireCreator(agent, current);
        const merged: UnitRow = { ...current };
        for (const key of ['visibility_level', 'name', 'is_auto_update_from_repo_unit', 'target_firmware_platform', 'repo_branch', 'repo_commit'] as const) {
          const value = body[key];
          if (value !== undefined && value !== null) (merged as unknown as Record<string, unknown>)[key] = value;
        }
        this.assertName(merged.name);
        if (merged.name !== current.name) await this.assertNameFree(client, merged.name, uuid);
        const source = await loadRepoSource(client, current.repo_uuid);
        this.assertVisibilityUnder(source.repo, 'Repo', merged.visibility_level, 'Unit');
        const versions = this.versions(source);
        await this.assertVersionSettings(versions, merged);
        const plan = await planUnitSync(app, merged, versions);

        await client.query(
          `UPDATE units SET visibility_level = $2, name = $3, is_auto_update_from_repo_unit = $4, target_firmware_platform = $5,
                  repo_branch = $6, repo_commit = $7, last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`,
          [uuid, merged.visibility_level, merged.name, merged.is_auto_update_from_repo_unit, merged.target_firmware_platform, merged.repo_branch, merged.repo_commit],
        );
        await raiseNodesVisibility(client, uuid, merged.visibility_level);
        changes = await applyUnitSync(app, client, merged, plan);
        return loadUnit(client, uuid);
      });
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new UnitError('Name is not unique');
      throw error;
    }
    await app.acl.invalidate('unit updated');
    await afterNodeChanges(app, changes);
    try {
      await sendUnitCommand(app, updated, 'Update');
      updated = await loadUnit(app.pg, uuid);
    } catch (error) {
      // The reference ignores MQTT failures here; the update itself succeeded.
      app.log.debug({ unitUuid: uuid, err: (error as Error).message }, 'Update command after a unit update not sent');
      updated = await loadUnit(app.pg, uuid);
    }
    return toUnitRead(updated);
  }

  /**
   * Deletes the unit (nodes, edges and permissions cascade) and its ClickHouse rows: unit_logs
   * and the DataPipe tables of its nodes. ClickHouse goes first, so a failure there leaves the
   * unit intact for a retry; a second pass after the Postgres delete catches rows written in
   * between.
   */
  async delete(agent: Extract<Agent, { type: 'User' }>, uuid: string): Promise<void> {
    const { app } = this;
    const unit = await loadUnit(app.pg, uuid);
    requireCreator(agent, unit);
    const { rows } = await app.pg.query<{ uuid: string; is_data_pipe_active: boolean }>(
      'SELECT uuid, is_data_pipe_active FROM units_nodes WHERE unit_uuid = $1',
      [uuid],
    );
    const nodeUuids = rows.map((row) => row.uuid);
    const activePipes: UnitNodeStreamRow[] = [];
    for (const row of rows) {
      if (!row.is_data_pipe_active) continue;
      const streamRow = await activePipeRow(app.pg, row.uuid);
      if (streamRow) activePipes.push(streamRow);
    }
    await deleteUnitLogs(app, uuid);
    await deleteDataPipeNodeRows(app.clickhouse, nodeUuids, app.log);
    await app.pg.query('DELETE FROM units WHERE uuid = $1', [uuid]);
    // Its live sessions end now; the token no longer authenticates.
    await app.acl.invalidate('unit deleted', { units: [uuid] });
    await announceDataPipeNodes(app, [], activePipes);
    try {
      await deleteUnitLogs(app, uuid);
      await deleteDataPipeNodeRows(app.clickhouse, nodeUuids, app.log);
    } catch (error) {
      app.log.warn({ unitUuid: uuid, err: (error as Error).message }, 'second ClickHouse clean-up pass of a deleted unit failed');
    }
  }

  async list(agent: Agent, query: UnitsQuery): Promise<{ count: number; units: UnitRead[] }> {
    const { app } = this;
    const values: unknown[] = [];
    const where: string[] = [];
    const unitVisibility = visibilityFilter(agent, 'Unit', query.visibility_level);
    // The total uses the set-based form of the visibility check, the page the per-row form.
    const countValues: unknown[] = [];
    const countVisibility = visibilityCondition('u', unitVisibility, countValues, 'count');
    where.push(visibilityCondition('u', unitVisibility, values));
    const filtersFrom = values.length;
    if (query.uuids?.length) {
      values.push(query.uuids);
      where.push(`u.uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.creator_uuid) {
      values.push(query.creator_uuid);
      where.push(`u.creator_uuid = $${values.length}`);
    }
    if (query.repo_uuid) {
      values.push(query.repo_uuid);
      where.push(`u.repo_uuid = $${values.length}`);
    }
    if (query.repos_uuids?.length) {
      values.push(query.repos_uuids);
      where.push(`u.repo_uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.is_auto_update_from_repo_unit !== undefined) {
      values.push(query.is_auto_update_from_repo_unit);
      where.push(`u.is_auto_update_from_repo_unit = $${values.length}`);
    }
    where.push(...searchConditions(query.search_string, ['u.name'], values));

    const includeNodes = query.is_include_output_unit_nodes === true;
    const nodeVisibility = includeNodes ? visibilityFilter(agent, 'UnitNode', undefined) : null;
    const nodeTypes = query.unit_node_type?.length ? query.unit_node_type : ['Input', 'Output'];
    if (includeNodes && nodeVisibility) {
      // Explicit node filters select units; without them units are listed even when they
      // have no (matching) node (reference quirk 11 fixed).
      if (query.unit_node_input_uuid) {
        values.push(query.unit_node_input_uuid);
        const input = `$${values.length}`;
        where.push(`EXISTS (SELECT 1 FROM units_nodes n JOIN units_nodes_edges e ON e.node_output_uuid = n.uuid
                             WHERE n.unit_uuid = u.uuid AND e.node_input_uuid = ${input} AND ${visibilityCondition('n', nodeVisibility, values)})`);
      } else if (query.unit_node_uuids?.length) {
        values.push(query.unit_node_uuids, nodeTypes);
        where.push(`EXISTS (SELECT 1 FROM units_nodes n WHERE n.unit_uuid = u.uuid AND n.uuid = ANY($${values.length - 1}::uuid[])
                             AND n.type = ANY($${values.length}::varchar[]) AND ${visibilityCondition('n', nodeVisibility, values)})`);
      }
    }

    const clause = `WHERE ${where.join(' AND ')}`;
    // Same filters after the visibility condition, renumbered after the count's own values.
    const shift = countValues.length - filtersFrom;
    const countClause = `WHERE ${[countVisibility, ...where.slice(1).map((w) => w.replace(/\$(\d+)/g, (_m, n: string) => `$${Number(n) + shift}`))].join(' AND ')}`;
    countValues.push(...values.slice(filtersFrom));
    const direction = (value: 'asc' | 'desc' | undefined, fallback: 'ASC' | 'DESC') => (value === undefined ? fallback : value === 'asc' ? 'ASC' : 'DESC');
    const order = `u.create_datetime ${direction(query.order_by_create_date, 'DESC')}, u.last_update_datetime ${direction(query.order_by_last_update, 'DESC')}, u.name ${direction(query.order_by_unit_name, 'ASC')}, u.uuid`;
    const page = paging(query, app.config, values, { shapeLimit: true });
    // The page walks the create_datetime index; the total is cached until units or permissions change.
    const [count, { rows }] = await Promise.all([
      this.counts.get(`units ${countClause} ${JSON.stringify(countValues)}`, async () => Number((await app.pg.query<{ n: string }>(`SELECT count(*) AS n FROM units u ${countClause}`, countValues)).rows[0]!.n)),
      // A named (prepared) statement per query shape: Postgres parses it once per connection and,
      // once a generic plan is as good, stops planning it. The explicit column list keeps the
      // result type fixed when a migration adds columns (another replica upgrading).
      preparedQuery<UnitReadRow>(app.pg, 'units_page', `SELECT ${UNIT_READ_COLUMNS.map((c) => `u.${c}`).join(', ')} FROM units u ${clause} ORDER BY ${order} ${page}`, values),
    ]);

    const nodesByUnit = new Map<string, UnitNodeRow[]>();
    if (includeNodes && nodeVisibility && rows.length > 0) {
      const nodeValues: unknown[] = [rows.map((row) => row.uuid)];
      let sql: string;
      if (query.unit_node_input_uuid) {
        nodeValues.push(query.unit_node_input_uuid);
        sql = `SELECT n.* FROM units_nodes n JOIN units_nodes_edges e ON e.node_output_uuid = n.uuid
                WHERE n.unit_uuid = ANY($1::uuid[]) AND e.node_input_uuid = $2 AND ${visibilityCondition('n', nodeVisibility, nodeValues)}`;
      } else {
        nodeValues.push(nodeTypes);
        sql = `SELECT n.* FROM units_nodes n WHERE n.unit_uuid = ANY($1::uuid[]) AND n.type = ANY($2::varchar[])`;
        if (query.unit_node_uuids?.length) {
          nodeValues.push(query.unit_node_uuids);
          sql += ` AND n.uuid = ANY($${nodeValues.length}::uuid[])`;
        }
        sql += ` AND ${visibilityCondition('n', nodeVisibility, nodeValues)}`;
      }
      const nodes = await app.pg.query<UnitNodeRow>(`${sql} ORDER BY n.create_datetime, n.uuid`, nodeValues);
      const seen = new Set<string>();
      for (const node of nodes.rows) {
        if (seen.has(node.uuid)) continue; // a node linked twice (legacy duplicate edges) is listed once
        seen.add(node.uuid);
        const list = nodesByUnit.get(node.unit_uuid!) ?? [];
        list.push(node);
        nodesByUnit.set(node.unit_uuid!, list);
      }
    }
    return {
      count,
      units: rows.map((row) => toUnitRead(row, (nodesByUnit.get(row.uuid) ?? []).map(toUnitNodeRead))),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // env.json, schema.json, target version

  private async loadOwned(agent: Agent, uuid: string): Promise<UnitRow> {
    const unit = await loadUnit(this.app.pg, uuid);
    requireUnitOwnerOrSelf(agent, unit);
    return unit;
  }

  private async storedEnv(unit: UnitRow): Promise<EnvDict | null> {
    return unit.cipher_env_dict ? parseEnvObject(this.app.cipher.decrypt(unit.cipher_env_dict), 'Cipher env') : null;
  }

  /** GET variant: layers 4+3+2 with PU_COMMIT_VERSION. */
  private async currentEnv(unit: UnitRow, versions: RepoVersions, commit: string): Promise<{ env: EnvDict; envExample: EnvDict }> {
    const envExample = await versions.envExample(commit);
    const env = unifiedEnv({
      envExample,
      generated: generatedEnv(this.app.config, unit.uuid),
      stored: await this.storedEnv(unit),
      user: null,
      commit,
      includeCommitVersion: true,
    });
    return { env, envExample };
  }

  async getEnv(agent: Agent, uuid: string): Promise<EnvDict> {
    const unit = await this.loadOwned(agent, uuid);
    const versions = await this.versionsOf(unit);
    const target = await versions.unitTarget(unit);
    return (await this.currentEnv(unit, versions, target.commit)).env;
  }

  async setEnv(agent: Extract<Agent, { type: 'User' }>, uuid: string, envJsonString: string): Promise<void> {
    const unit = await loadUnit(this.app.pg, uuid);
    requireCreator(agent, unit);
    const user = parseEnvObject(envJsonString, 'env.json');
    const versions = await this.versionsOf(unit);
    const target = await versions.unitTarget(unit);
    const envExample = await versions.envExample(target.commit);
    const env = unifiedEnv({
      envExample,
      generated: generatedEnv(this.app.config, unit.uuid),
      stored: await this.storedEnv(unit),
      user,
      commit: target.commit,
      includeCommitVersion: false,
    });
    assertEnvComplete(envExample, env);
    const cipher = this.app.cipher.encrypt(JSON.stringify(env));
    await this.app.pg.query(`UPDATE units SET cipher_env_dict = $2, last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`, [uuid, cipher]);
  }

  async resetEnv(agent: Extract<Agent, { type: 'User' }>, uuid: string): Promise<void> {
    const unit = await loadUnit(this.app.pg, uuid);
    requireCreator(agent, unit);
    await this.app.pg.query(`UPDATE units SET cipher_env_dict = NULL, last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`, [uuid]);
  }

  async targetVersion(agent: Agent, uuid: string): Promise<TargetVersionRead> {
    const unit = await this.loadOwned(agent, uuid);
    const target = await (await this.versionsOf(unit)).unitTarget(unit);
    return { commit: target.commit, tag: target.tag };
  }

  private async schemaFor(unit: UnitRow, versions: RepoVersions, commit: string): Promise<CurrentSchema> {
    const schema = await schemaAt(this.app, versions, commit);
    const { nodes, edges } = await nodesAndEdgesForSchema(this.app.pg, unit.uuid);
    return buildCurrentSchema(this.app.config.domain, unit.uuid, schema, nodes, edges);
  }

  async currentSchema(agent: Agent, uuid: string): Promise<CurrentSchema> {
    const unit = await this.loadOwned(agent, uuid);
    const versions = await this.versionsOf(unit);
    const target = await versions.unitTarget(unit);
    return this.schemaFor(unit, versions, target.commit);
  }

  // ---------------------------------------------------------------------------------------------
  // firmware, state storage, commands

  /** Builds the firmware directory of a unit; the caller streams it with `firmwareArchiveStream`. */
  async prepareFirmware(agent: Agent, uuid: string, format: ArchiveFormat, tgz?: { wbits: number; level: number }): Promise<FirmwareBuild> {
    if (format === 'tgz') assertTgzParameters(tgz?.wbits ?? 9, tgz?.level ?? 9);
    const unit = await this.loadOwned(agent, uuid);
    const versions = await this.versionsOf(unit);
    const target = await versions.unitTarget(unit);
    const { env, envExample } = await this.currentEnv(unit, versions, target.commit);
    assertEnvComplete(envExample, env);
    const schema = await this.schemaFor(unit, versions, target.commit);
    const compilable = versions.repo.is_compilable_repo;
    return buildFirmware({
      source: compilable
        ? null
        : { store: { exportTree: (_key, commit, destination) => versions.exportTree(commit, destination) }, key: versions.source.key, commit: target.commit },
      env,
      schema,
    });
  }

  async setStateStorage(agent: Agent, uuid: string, state: string): Promise<void> {
    const unit = await this.loadOwned(agent, uuid);
    const cipher = state === '' ? null : this.app.cipher.encrypt(state);
    await this.app.pg.query(`UPDATE units SET cipher_state_storage = $2, last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`, [unit.uuid, cipher]);
  }

  async getStateStorage(agent: Agent, uuid: string): Promise<string> {
    const unit = await this.loadOwned(agent, uuid);
    return unit.cipher_state_storage ? this.app.cipher.decrypt(unit.cipher_state_storage) : '';
  }

  /**
   * `GET /units/log_list/` (reference §7.7): the unit's logs from ClickHouse, newest first by
   * default; an explicitly empty level list returns nothing. Values are bound; `limit` is capped at
   * PU_MAX_PAGINATION_SIZE (0/absent = the cap, where the reference meant "everything"): `count` is
   * the total and `next_offset` the offset of the next page (null on the last), so a cut is never silent.
   */
  async logs(agent: Agent, query: { uuid: string; level?: string[]; order_by_create_date?: 'asc' | 'desc'; offset?: number; limit?: number }) {
    const unit = await this.loadOwned(agent, query.uuid);
    const max = this.app.config.maxPaginationSize;
    const limit = query.limit && query.limit > 0 ? query.limit : max;
    if (limit > max) throw new ValidationError(`limit must be <= ${max}`);
    const levels = query.level ?? ['Debug', 'Info', 'Warning', 'Error', 'Critical'];
    if (levels.length === 0) return { count: 0, unit_logs: [], next_offset: null };
    const params = { unit: unit.uuid, levels, limit, offset: query.offset ?? 0 };
    const where = 'unit_uuid = {unit:UUID} AND level IN {levels:Array(String)}';
    const order = query.order_by_create_date === 'asc' ? 'ASC' : 'DESC';
    const [countResult, rowsResult] = await Promise.all([
      this.app.clickhouse.query({ query: `SELECT count() AS n FROM unit_logs WHERE ${where}`, query_params: params, format: 'JSONEachRow' }),
      this.app.clickhouse.query({
        // Aliases must not shadow the filtered columns (ClickHouse substitutes aliases in WHERE).
        query: `SELECT toString(uuid) AS uuid_text, toString(level) AS level_text, toString(unit_uuid) AS unit_text, text,
                       toUnixTimestamp64Milli(create_datetime) AS create_ms, toUnixTimestamp(expiration_datetime) AS expiration_s
                  FROM unit_logs WHERE ${where} ORDER BY create_datetime ${order} LIMIT {limit:UInt32} OFFSET {offset:UInt32}`,
        query_params: params,
        format: 'JSONEachRow',
      }),
    ]);
    const count = Number(((await countResult.json()) as Array<{ n: string }>)[0]?.n ?? 0);
    const rows = (await rowsResult.json()) as Array<{ uuid_text: string; level_text: string; unit_text: string; text: string; create_ms: string | number; expiration_s: string | number }>;
    const nextOffset = params.offset + rows.length;
    return {
      count,
      next_offset: rows.length > 0 && nextOffset < count ? nextOffset : null,
      unit_logs: rows.map((r) => ({
        uuid: r.uuid_text,
        level: r.level_text,
        unit_uuid: r.unit_text,
        text: r.text,
        create_datetime: isoNaive(new Date(Number(r.create_ms)))!,
        expiration_datetime: isoNaive(new Date(Number(r.expiration_s) * 1000))!,
      })),
    };
  }

  async command(agent: Agent, uuid: string, command: UnitCommand): Promise<void> {
    const unit = await this.loadOwned(agent, uuid);
    await sendUnitCommand(this.app, unit, command);
  }
}

/**
 * SQL condition for a visibility filter on `alias`: the allowed levels, plus Private rows the
 * agent holds a permission for. Values are bound.
 */
