/**
 * Commands to units over their input base topics (pepeunit-backend.md §2.4), "sync to
 * version" of a unit (§7.3) and the repo-wide firmware update `updateUnitsFirmware`.
 */
import type { FastifyInstance } from 'fastify';
import type { PoolClient } from 'pg';
import { pythonJsonDumps } from '@pepeunit/common/datapipe/index';
import { MqttError, PepeunitError } from '../../../../errors.js';
import { announceDataPipeNodes, deleteDataPipeRows, reconcileUnitNodes } from '../unit_nodes/unit-node-rows.js';
import type { UnitNodeStreamRow } from '../../../../services/datapipe-events.js';
import { loadRepoSource, RepoVersions } from './repo-versions.js';
import { assertEnvComplete, generatedEnv, parseEnvObject, unifiedEnv } from './unit-env.js';
import { commandTopic, validateSchemaExample, type SchemaExample } from './unit-schema.js';
import { inTransaction, loadUnit, type UnitRow } from './unit-rows.js';
import type { TargetVersion } from '../../../../git/index.js';

export type UnitCommand = 'Update' | 'EnvUpdate' | 'SchemaUpdate' | 'LogSync';

export const COMMAND_PURPOSE: Record<UnitCommand, 'update' | 'env_update' | 'schema_update' | 'log_sync'> = {
  Update: 'update',
  EnvUpdate: 'env_update',
  SchemaUpdate: 'schema_update',
  LogSync: 'log_sync',
};

const PUBLISH_TIMEOUT_MS = 5000;

/** The allowed topic characters (character-class body), PU_AVAILABLE_TOPIC_SYMBOLS. */
export function topicSymbols(app: FastifyInstance): string {
  return app.config.symbols.topic;
}

/** Validated `schema_example.json` at a commit. */
export async function schemaAt(app: FastifyInstance, versions: RepoVersions, commit: string): Promise<SchemaExample> {
  return validateSchemaExample(await versions.schemaExampleRaw(commit), topicSymbols(app));
}

/** QoS 0 publish through the backend's MQTT connection; MqttError when the broker is unreachable. */
export async function publishMqtt(app: FastifyInstance, topic: string, payload: string): Promise<void> {
  const client = app.mqtt;
  const maxBytes = app.config.mqtt.maxPayloadSizeKb * 1024;
  if (Buffer.byteLength(payload) > maxBytes) throw new MqttError(`Payload size exceeds PU_MQTT_MAX_PAYLOAD_SIZE (${maxBytes} bytes)`);
  if (!client || !client.connected) throw new MqttError('MQTT client is disconnected');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new MqttError('MQTT publish timed out')), PUBLISH_TIMEOUT_MS);
    client.publish(topic, payload, { qos: 0, retain: false }, (error) => {
      clearTimeout(timer);
      if (error) reject(new MqttError(`MQTT publish failed: ${error.message}`));
      else resolve();
    });
  });
}

/** Deletes every ClickHouse log row of a unit (bound parameter, synchronous mutation). */
export async function deleteUnitLogs(app: FastifyInstance, unitUuid: string): Promise<void> {
  await app.clickhouse.command({
    query: 'ALTER TABLE unit_logs DELETE WHERE unit_uuid = {unit:UUID}',
    query_params: { unit: unitUuid },
    clickhouse_settings: { mutations_sync: '1' },
  });
}

export interface CommandResult {
  /** False when the target schema does not list the command's input base topic (silent no-op). */
  sent: boolean;
  topic: string;
  payload: Record<string, string> | null;
}

/**
 * Sends `command` to a unit (§2.4): only when the target version's schema lists the topic in
 * `input_base_topic`. Update carries PU_COMMIT_VERSION (and COMPILED_FIRMWARE_LINK for
 * compilable repos) and records RequestSent / Error on the unit; LogSync first deletes the
 * unit's ClickHouse logs. MQTT failures raise MqttError (after recording Error for Update).
 */
export async function sendUnitCommand(app: FastifyInstance, unit: UnitRow, command: UnitCommand, versions?: RepoVersions): Promise<CommandResult> {
  const repoVersions = versions ?? new RepoVersions(app.gitStore, await loadRepoSource(app.pg, unit.repo_uuid));
  const target = await repoVersions.unitTarget(unit);
  const schema = await schemaAt(app, repoVersions, target.commit);
  const purpose = COMMAND_PURPOSE[command];
  const topic = commandTopic(app.config.domain, unit.uuid, purpose);
  if (!schema.input_base_topic.includes(`${purpose}/pepeunit`)) return { sent: false, topic, payload: null };

  const payload: Record<string, string> = { COMMAND: command };
  if (command === 'Update') {
    payload.PU_COMMIT_VERSION = target.commit;
    const link = await repoVersions.firmwarePlatformLink(unit, target);
    if (link !== null) payload.COMPILED_FIRMWARE_LINK = link;
  } else if (command === 'LogSync') {
    await deleteUnitLogs(app, unit.uuid);
  }
  try {
    await publishMqtt(app, topic, pythonJsonDumps(payload));
  } catch (error) {
    if (command === 'Update' && error instanceof PepeunitError) {
      await app.pg.query(
        `UPDATE units SET firmware_update_status = 'Error', firmware_update_error = $2, last_firmware_update_datetime = NULL WHERE uuid = $1`,
        [unit.uuid, error.message],
      );
    }
    throw error;
  }
  if (command === 'Update') {
    await app.pg.query(
      `UPDATE units SET firmware_update_status = 'RequestSent', firmware_update_error = NULL,
              last_firmware_update_datetime = (now() AT TIME ZONE 'utc'), firmware_update_target_commit = $2 WHERE uuid = $1`,
      [unit.uuid, target.commit],
    );
  }
  return { sent: true, topic, payload };
}

/** Sends a command and swallows (logs) every failure: for notifications after a change that already succeeded. */
export async function notifyUnit(app: FastifyInstance, unitUuid: string | null, command: UnitCommand): Promise<void> {
  if (!unitUuid) return;
  try {
    const unit = await loadUnit(app.pg, unitUuid);
    await sendUnitCommand(app, unit, command);
  } catch (error) {
    app.log.debug({ unitUuid, command, err: (error as Error).message }, 'unit notification not sent');
  }
}

export interface SyncPlan {
  target: TargetVersion;
  /** True when the unit already runs the target: nothing to change. */
  unchanged: boolean;
  schema: SchemaExample | null;
  /** New encrypted env, or undefined to keep the stored one. */
  cipherEnv?: string;
}

/**
 * Validates a unit (with its new settings) against its target version without writing:
 * compilable platform, target version, schema; when the target differs from what the device
 * runs, the env is regenerated from the stored one and checked against the new env_example.
 */
export async function planUnitSync(app: FastifyInstance, unit: UnitRow, versions: RepoVersions): Promise<SyncPlan> {
  const target = await versions.unitTarget(unit);
  await versions.firmwarePlatformLink(unit, target);
  // Always read both files, so a target with a broken schema or env example is refused.
  const schema = await schemaAt(app, versions, target.commit);
  const envExample = await versions.envExample(target.commit);
  if (target.commit === unit.current_commit_version) return { target, unchanged: true, schema };
  const plan: SyncPlan = { target, unchanged: false, schema };
  if (unit.cipher_env_dict) {
    const stored = parseEnvObject(app.cipher.decrypt(unit.cipher_env_dict), 'Cipher env');
    const env = unifiedEnv({
      envExample,
      generated: generatedEnv(app.config, unit.uuid),
      stored,
      user: null,
      commit: target.commit,
      includeCommitVersion: false,
    });
    assertEnvComplete(envExample, env);
    plan.cipherEnv = app.cipher.encrypt(JSON.stringify(env));
  }
  return plan;
}

export interface NodeChanges {
  created: string[];
  deleted: string[];
  /** Deleted nodes whose DataPipe was active (stream rows read before deletion). */
  deletedPipes: UnitNodeStreamRow[];
}

/** Writes a plan inside the caller's transaction; returns the node changes. */
export async function applyUnitSync(app: FastifyInstance, client: PoolClient, unit: UnitRow, plan: SyncPlan): Promise<NodeChanges> {
  if (plan.unchanged || !plan.schema) return { created: [], deleted: [], deletedPipes: [] };
  if (plan.cipherEnv !== undefined) await client.query('UPDATE units SET cipher_env_dict = $2 WHERE uuid = $1', [unit.uuid, plan.cipherEnv]);
  const changes = await reconcileUnitNodes(client, unit, plan.schema, app.config);
  await client.query(`UPDATE units SET last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`, [unit.uuid]);
  return changes;
}

/** After a committed sync: DataPipe notifications and best-effort ClickHouse clean-up of deleted nodes. */
export async function afterNodeChanges(app: FastifyInstance, changes: NodeChanges): Promise<void> {
  await announceDataPipeNodes(app, changes.created, changes.deletedPipes);
  if (changes.deleted.length === 0) return;
  await deleteDataPipeRows(app.clickhouse, changes.deleted).catch((error: unknown) =>
    app.log.warn({ err: (error as Error).message, nodes: changes.deleted.length }, 'could not delete DataPipe rows of removed unit nodes'),
  );
}

export interface UnitsFirmwareResult {
  repoUuid: string;
  total: number;
  updated: number;
  /** Left alone by `onlyOutdated`: already on the target, or an Update for it in flight. */
  skipped: number;
  failed: number;
  errors: { unitUuid: string; error: string }[];
}

/**
 * Repo-wide update (§7.3): every unit of the repo with `is_auto_update_from_repo_unit` is
 * synced to its target version (nodes, env) and sent an Update command. Failures are logged and
 * counted per unit; the others proceed. Used by `PATCH /repos/update_units_firmware/{uuid}`,
 * bulk updates and the hourly job (through `app.unitsFirmware`).
 */
export interface UnitsFirmwareOptions {
  /**
   * Automatic updates: leave out units whose device already runs the target, and units with an
   * Update for this very target still in flight (sent less than twice the state interval ago);
   * a target that moved since gets a new Update at once.
   */
  readonly onlyOutdated?: boolean;
  /** Why the update runs, for the logs. */
  readonly reason?: string;
}

/**
 * Whether an automatic update should leave this unit alone for `targetCommit`: its device runs
 * it, or an Update for it was sent less than twice the state interval ago (after that the
 * firmware status turns Error and the unit is due again). Compared in SQL: the stored times are
 * UTC wall times without a zone.
 */
export async function isUpToDateOrInFlight(client: PoolClient, unit: UnitRow, targetCommit: string, stateIntervalSeconds: number): Promise<boolean> {
  if (unit.current_commit_version === targetCommit) return true;
  const { rows } = await client.query<{ in_flight: boolean }>(
    `SELECT firmware_update_status = 'RequestSent' AND firmware_update_target_commit = $2
            AND last_firmware_update_datetime > (now() AT TIME ZONE 'utc') - make_interval(secs => $3::float8) AS in_flight
       FROM units WHERE uuid = $1`,
    [unit.uuid, targetCommit, 2 * stateIntervalSeconds],
  );
  return rows[0]?.in_flight === true;
}

export async function updateUnitsFirmware(app: FastifyInstance, repoUuid: string, options: UnitsFirmwareOptions = {}): Promise<UnitsFirmwareResult> {
  const versions = new RepoVersions(app.gitStore, await loadRepoSource(app.pg, repoUuid));
  const { rows } = await app.pg.query<{ uuid: string }>(
    'SELECT uuid FROM units WHERE repo_uuid = $1 AND is_auto_update_from_repo_unit ORDER BY create_datetime, uuid',
    [repoUuid],
  );
  const result: UnitsFirmwareResult = { repoUuid, total: rows.length, updated: 0, skipped: 0, failed: 0, errors: [] };
  let nodesChanged = false;
  for (const { uuid } of rows) {
    try {
      const outcome = await inTransaction(app.pg, async (client) => {
        const locked = await loadUnit(client, uuid, true);
        const plan = await planUnitSync(app, locked, versions);
        if (options.onlyOutdated && (await isUpToDateOrInFlight(client, locked, plan.target.commit, app.config.stateSendInterval))) return null;
        return { unit: locked, changes: await applyUnitSync(app, client, locked, plan) };
      });
      if (outcome === null) {
        result.skipped++;
        continue;
      }
      const { unit, changes } = outcome;
      if (changes.created.length > 0 || changes.deleted.length > 0) nodesChanged = true;
      await afterNodeChanges(app, changes);
      await sendUnitCommand(app, unit, 'Update', versions);
      result.updated++;
    } catch (error) {
      result.failed++;
      const message = error instanceof Error ? error.message : String(error);
      result.errors.push({ unitUuid: uuid, error: message });
      app.log.warn({ repoUuid, unitUuid: uuid, err: message }, 'unit firmware update failed');
    }
  }
  if (nodesChanged) await app.acl.invalidate('unit nodes synced to a new repo version');
  if (result.updated > 0 || result.failed > 0 || !options.onlyOutdated) {
    app.log.info({ repoUuid, reason: options.reason, total: result.total, updated: result.updated, skipped: result.skipped, failed: result.failed }, 'units firmware update finished');
  }
  return result;
}
