import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { cleanupStaleBuilds } from '../../../../services/firmware/index.js';
import { loadUnit } from '../../../../domain/unit-rows.js';
import { sendUnitCommand, updateUnitsFirmware, type CommandResult, type UnitCommand, type UnitsFirmwareOptions, type UnitsFirmwareResult } from '../../../../domain/unit-firmware.js';

export interface UnitsFirmware {
  /** Repo-wide update (§7.3): sync every auto-updating unit of the repo and send it Update. */
  updateUnitsFirmware(repoUuid: string, options?: UnitsFirmwareOptions): Promise<UnitsFirmwareResult>;
  /** Sends one command to one unit (no access checks: for internal callers). */
  sendCommand(unitUuid: string, command: UnitCommand): Promise<CommandResult>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Firmware updates and unit commands for other modules (repos API, periodic jobs). */
    readonly unitsFirmware: UnitsFirmware;
  }
}

/**
 * Decorates the root instance with `app.unitsFirmware`. Needs `pg`, `gitStore`, `mqtt`,
 * `clickhouse` and `acl` to be registered first.
 */
export default fp(
  async (app: FastifyInstance) => {
    const stale = await cleanupStaleBuilds().catch(() => 0);
    if (stale > 0) app.log.info({ removed: stale }, 'stale firmware build directories removed');
    app.decorate('unitsFirmware', {
      updateUnitsFirmware: (repoUuid: string, options?: UnitsFirmwareOptions) => updateUnitsFirmware(app, repoUuid, options),
      sendCommand: async (unitUuid: string, command: UnitCommand) => sendUnitCommand(app, await loadUnit(app.pg, unitUuid), command),
    } satisfies UnitsFirmware);
  },
  { name: 'pepeunit-units-firmware', dependencies: ['pepeunit-core', 'pepeunit-git-store', 'pepeunit-acl'] },
);
