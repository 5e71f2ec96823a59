/**
 * Stable quick-start ports. Devices are handed the backend's and the broker's ports in env.json,
 * so a port is chosen once per data folder and reused on every later start:
 *
 * - first start: the standard port when free, else the next free one above it;
 * - later starts: the recorded port; if another program holds it, the start stops with a message
 *   saying which port, what holds it and how to move (`--move-ports`), instead of silently
 *   picking another port that devices do not know;
 * - several checkouts on one machine: choices are made under a machine-wide lock and recorded as
 *   claims, so two checkouts started at the same moment never pick the same port, and a stopped
 *   checkout's ports are not taken by another one.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { isPortFree } from '@pepeunit/common';
import { readPlatformState, type QuickstartService } from './state.ts';

export const PREFERRED_PORTS: Readonly<Record<QuickstartService, number>> = { backend: 5000, mqtt: 1883, emqx_api: 18083, clickhouse: 18123 };

/** Address each service binds, where freeness is checked. */
export const BIND_HOSTS: Readonly<Record<QuickstartService, string>> = { backend: '127.0.0.1', mqtt: '0.0.0.0', emqx_api: '127.0.0.1', clickhouse: '127.0.0.1' };

const SERVICE_NAMES: Readonly<Record<QuickstartService, string>> = { backend: 'backend (REST)', mqtt: 'MQTT broker', emqx_api: 'broker management API', clickhouse: 'embedded ClickHouse' };

/** How far above the standard port a first start looks before asking the kernel. */
const SCAN_RANGE = 200;

export class PortTakenError extends Error {
  constructor(readonly service: QuickstartService, readonly port: number, holder: string) {
    super(
      `Port ${port} of the ${SERVICE_NAMES[service]}, chosen at the first start and recorded in platform.json, is in use by ${holder}.\n` +
        `Devices were given this port in their env.json, so the quick start does not silently pick another one.\n` +
        `Either stop what holds port ${port}, or move this checkout to free ports:\n` +
        `    bash scripts/up.sh --move-ports\n` +
        `(units set up before the move then need their env.json again: GET /pepeunit/api/v1/units/env/{uuid}).`,
    );
    this.name = 'PortTakenError';
  }
}

export interface PortPlanRequest {
  readonly dataDir: string;
  /** The services this start runs. */
  readonly services: readonly QuickstartService[];
  /** Ports recorded at an earlier start. */
  readonly recorded: Partial<Record<QuickstartService, number>>;
  /** Ports the operator set explicitly (environment); used as given. */
  readonly overrides?: Partial<Record<QuickstartService, number>>;
  /** Re-choose recorded ports that are taken instead of stopping. */
  readonly movePorts?: boolean;
  /** Where claims live (default `$XDG_STATE_HOME/pepeunit-ts/ports`, else `~/.local/state/...`). */
  readonly registryDir?: string;
  /** Persists the plan (the data folder's state file) while the machine-wide lock is still held. */
  readonly commit: (plan: PortPlan) => void;
  /** Is `port` free for `service`? (Default: try to bind it.) */
  readonly isFree?: (port: number, service: QuickstartService) => Promise<boolean>;
}

export interface PortPlan {
  readonly ports: Record<QuickstartService, number>;
  /** Services whose port was chosen now (first start, or a move). */
  readonly chosen: QuickstartService[];
  readonly moved: Array<{ service: QuickstartService; from: number; to: number }>;
}

export function defaultRegistryDir(): string {
  if (process.env.PU_PORT_REGISTRY_DIR) return process.env.PU_PORT_REGISTRY_DIR;
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'pepeunit-ts', 'ports');
}

interface Claim {
  readonly dataDir: string;
  readonly service: QuickstartService;
}

function readClaim(file: string): Claim | undefined {
  try {
    const claim = JSON.parse(readFileSync(file, 'utf8')) as Partial<Claim>;
    return typeof claim.dataDir === 'string' && typeof claim.service === 'string' ? (claim as Claim) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The data folder that holds `port`, other than `dataDir`; undefined when nobody else does.
 * A claim is live while its folder's platform.json still records that port (claims and state are
 * written together under the lock, so a claim without state is a leftover).
 */
function otherHolder(registryDir: string, port: number, dataDir: string): string | undefined {
  const claim = readClaim(join(registryDir, `${port}.json`));
  if (!claim || claim.dataDir === dataDir) return undefined;
  if (!existsSync(claim.dataDir)) return undefined;
  try {
    const state = readPlatformState(claim.dataDir);
    if (state && Object.values(state.ports).includes(port)) return claim.dataDir;
  } catch {
    return claim.dataDir; // unreadable state: be conservative
  }
  return undefined;
}

export async function planPorts(request: PortPlanRequest): Promise<PortPlan> {
  const registryDir = request.registryDir ?? defaultRegistryDir();
  mkdirSync(registryDir, { recursive: true, mode: 0o700 });
  const isFree = request.isFree ?? ((port: number, service: QuickstartService) => isPortFree(port, BIND_HOSTS[service]));
  // One start at a time chooses ports on this machine (stale after 30 s: a crashed start).
  const release = await lockfile.lock(registryDir, { realpath: false, stale: 30_000, update: 5_000, retries: { retries: 600, minTimeout: 50, maxTimeout: 100 } });
  try {
    const ports = {} as Record<QuickstartService, number>;
    const chosen: QuickstartService[] = [];
    const moved: PortPlan['moved'] = [];
    const taken = new Set<number>();
    for (const service of request.services) {
      const override = request.overrides?.[service];
      const recorded = request.recorded[service];
      if (override !== undefined && override > 0) {
        ports[service] = override;
      } else if (recorded !== undefined) {
        const holder = otherHolder(registryDir, recorded, request.dataDir);
        const free = holder === undefined && (await isFree(recorded, service));
        if (free) {
          ports[service] = recorded;
        } else if (request.movePorts) {
          ports[service] = await choose(service);
          moved.push({ service, from: recorded, to: ports[service] });
          chosen.push(service);
        } else {
          throw new PortTakenError(service, recorded, holder ? `another Pepeunit TS checkout (${holder})` : 'another program');
        }
      } else {
        ports[service] = await choose(service);
        chosen.push(service);
      }
      taken.add(ports[service]);
    }
    // Claims follow the plan: ours for every port in use, none for ports we left.
    for (const name of readdirSync(registryDir)) {
      if (!name.endsWith('.json')) continue;
      const claim = readClaim(join(registryDir, name));
      if (claim?.dataDir === request.dataDir && !taken.has(Number.parseInt(name, 10))) rmSync(join(registryDir, name), { force: true });
    }
    for (const service of request.services) {
      writeFileSync(join(registryDir, `${ports[service]}.json`), JSON.stringify({ dataDir: request.dataDir, service } satisfies Claim) + '\n', { mode: 0o600 });
    }
    const plan = { ports, chosen, moved };
    request.commit(plan);
    return plan;

    async function choose(service: QuickstartService): Promise<number> {
      const preferred = PREFERRED_PORTS[service];
      for (let port = preferred; port < preferred + SCAN_RANGE && port <= 65535; port++) {
        if (taken.has(port)) continue;
        if (otherHolder(registryDir, port, request.dataDir) !== undefined) continue;
        if (await isFree(port, service)) return port;
      }
      throw new Error(`No free port for the ${SERVICE_NAMES[service]} between ${preferred} and ${preferred + SCAN_RANGE - 1}; set it explicitly (docs/OPERATIONS.md, quick start).`);
    }
  } finally {
    await release();
  }
}
