// The embedded broker's configuration (what EMQX keeps in cluster.hocon and its ban table):
// authenticators, authorization sources and settings, listeners, zone, retainer, bans. Every
// change recompiles the runtime objects it affects and, with a state file, is written to disk so
// a restarted broker does not fall back to EMQX's permissive defaults.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BlockList, isIP } from 'node:net';
import type { Logger } from '../logger.js';
import { HttpAuthenticator } from './access/authn.js';
import { FileSource, HttpSource } from './access/authz.js';
import type { AuthorizationSettingsView, AuthorizationSource } from './access/authz.js';
import {
  DEFAULT_ACL_RULES,
  DEFAULT_AUTHZ_SETTINGS,
  checkAuthenticator,
  checkAuthzSettings,
  checkAuthzSource,
  defaultGlobalZone,
  defaultListener,
  defaultRetainer,
} from './resources.js';
import type { BanRecord } from './resources.js';

export interface StoredConfig {
  authentication: Record<string, unknown>[];
  authorization: { sources: Record<string, unknown>[]; settings: Record<string, unknown> };
  listeners: Record<string, Record<string, unknown>>;
  zone: Record<string, unknown>;
  retainer: Record<string, unknown>;
  bans: BanRecord[];
}

const STATE_VERSION = 1;
/** Longest callback timeout we expect (authz default 30 s) plus margin. */
const RETIRE_GRACE_MS = 60_000;

export function defaultConfig(listenerBind: string): StoredConfig {
  return {
    authentication: [],
    authorization: {
      sources: [checkAuthzSource({ type: 'file', enable: true, rules: DEFAULT_ACL_RULES })],
      settings: structuredClone(DEFAULT_AUTHZ_SETTINGS),
    },
    listeners: { 'tcp:default': defaultListener(listenerBind) },
    zone: defaultGlobalZone(),
    retainer: defaultRetainer(),
    bans: [],
  };
}

function normaliseIp(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export class ConfigStore {
  private current: StoredConfig;
  private authenticatorsCompiled: HttpAuthenticator[] = [];
  private sourcesCompiled: AuthorizationSource[] = [];
  private writeQueue: Promise<void> = Promise.resolve();
  private readonly retiring = new Map<{ close(): Promise<void> }, NodeJS.Timeout>();
  private readonly listeners = new Set<(sections: Set<keyof StoredConfig>) => void>();

  private constructor(
    initial: StoredConfig,
    private readonly stateFile: string | undefined,
    private readonly logger: Logger,
  ) {
    this.current = initial;
    this.authenticatorsCompiled = compileAuthentication(initial, logger);
    this.sourcesCompiled = compileSources(initial, logger);
  }

  /** Loads the state file when given and present, otherwise starts from EMQX's defaults. */
  static async open(options: { stateFile?: string; listenerBind: string; logger: Logger }): Promise<ConfigStore> {
    let initial = defaultConfig(options.listenerBind);
    if (options.stateFile) {
      const loaded = await readState(options.stateFile);
      if (loaded) {
        initial = loaded;
        for (const listener of Object.values(initial.listeners)) listener.bind = options.listenerBind;
        options.logger.info({ stateFile: options.stateFile }, 'embedded broker configuration loaded');
      }
    }
    const store = new ConfigStore(initial, options.stateFile, options.logger);
    if (options.stateFile) await store.persist();
    return store;
  }

  /** A deep copy of the stored configuration. */
  snapshot(): StoredConfig {
    return structuredClone(this.current);
  }

  get config(): Readonly<StoredConfig> {
    return this.current;
  }

  authenticators(): readonly HttpAuthenticator[] {
    return this.authenticatorsCompiled;
  }

  sources(): readonly AuthorizationSource[] {
    return this.sourcesCompiled;
  }

  authorizationSettings(): AuthorizationSettingsView {
    return this.current.authorization.settings as unknown as AuthorizationSettingsView;
  }

  listener(id: string): Record<string, unknown> | undefined {
    return this.current.listeners[id];
  }

  mqttZone(): Record<string, unknown> {
    return (this.current.zone.mqtt as Record<string, unknown> | undefined) ?? {};
  }

  retainerEnabled(): boolean {
    return this.current.retainer.enable !== false;
  }

  onChange(listener: (sections: Set<keyof StoredConfig>) => void): void {
    this.listeners.add(listener);
  }

  /**
   * Applies `mutate` to a copy; only when it returns without throwing does the copy replace the
   * configuration (so a rejected request changes nothing). Returns the mutator's result.
   */
  async update<T>(sections: Array<keyof StoredConfig>, mutate: (draft: StoredConfig) => T): Promise<T> {
    const draft = structuredClone(this.current);
    const result = mutate(draft);
    const changed = new Set(sections);
    // Compile before committing: a config that cannot be built changes nothing.
    const authenticators = changed.has('authentication') ? compileAuthentication(draft, this.logger) : undefined;
    const sources = changed.has('authorization') ? compileSources(draft, this.logger) : undefined;
    this.current = draft;
    if (authenticators) {
      this.retire(this.authenticatorsCompiled);
      this.authenticatorsCompiled = authenticators;
    }
    if (sources) {
      this.retire(this.sourcesCompiled);
      this.sourcesCompiled = sources;
    }
    for (const listener of this.listeners) listener(changed);
    await this.persist();
    return result;
  }

  /** The active ban matching this client, if any (expired bans are ignored). */
  findBan(clientid: string, username: string | null, peerhost: string, nowMs = Date.now()): BanRecord | undefined {
    const host = normaliseIp(peerhost);
    return this.current.bans.find((ban) => {
      if (ban.untilMs !== undefined && ban.untilMs <= nowMs) return false;
      switch (ban.as) {
        case 'clientid':
          return ban.who === clientid;
        case 'username':
          return username !== null && ban.who === username;
        case 'peerhost':
          return normaliseIp(ban.who) === host;
        case 'clientid_re':
          return new RegExp(ban.who).test(clientid);
        case 'username_re':
          return username !== null && new RegExp(ban.who).test(username);
        case 'peerhost_net': {
          const [address, bits] = ban.who.split('/');
          const family = isIP(address ?? '');
          if (family === 0 || isIP(host) !== family) return false;
          const list = new BlockList();
          list.addSubnet(address as string, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
          return list.check(host, family === 4 ? 'ipv4' : 'ipv6');
        }
      }
    });
  }

  /** Drops expired bans (EMQX sweeps them about once a minute). */
  async purgeExpiredBans(nowMs = Date.now()): Promise<void> {
    if (!this.current.bans.some((ban) => ban.untilMs !== undefined && ban.untilMs <= nowMs)) return;
    await this.update(['bans'], (draft) => {
      draft.bans = draft.bans.filter((ban) => ban.untilMs === undefined || ban.untilMs > nowMs);
    });
  }

  async close(): Promise<void> {
    await this.writeQueue;
    for (const timer of this.retiring.values()) clearTimeout(timer);
    const retired = [...this.retiring.keys()];
    this.retiring.clear();
    await Promise.all([...this.authenticatorsCompiled, ...this.sourcesCompiled, ...retired].map((item) => item.close()));
  }

  /** Replaced authenticators/sources may still serve a check that started before the change. */
  private retire(items: ReadonlyArray<{ close(): Promise<void> }>): void {
    for (const item of items) {
      const timer = setTimeout(() => {
        this.retiring.delete(item);
        void item.close();
      }, RETIRE_GRACE_MS);
      timer.unref();
      this.retiring.set(item, timer);
    }
  }

  private async persist(): Promise<void> {
    const file = this.stateFile;
    if (!file) return;
    const text = `${JSON.stringify({ version: STATE_VERSION, ...this.current }, null, 2)}\n`;
    this.writeQueue = this.writeQueue
      .then(async () => {
        await mkdir(dirname(file), { recursive: true });
        const temporary = `${file}.${process.pid}.tmp`;
        await writeFile(temporary, text, { mode: 0o600 });
        await rename(temporary, file);
      })
      .catch((error: unknown) => {
        this.logger.error({ err: error, stateFile: file }, 'could not write the embedded broker state file');
      });
    await this.writeQueue;
  }
}

function compileAuthentication(config: StoredConfig, logger: Logger): HttpAuthenticator[] {
  return config.authentication.map((entry) => new HttpAuthenticator(entry, logger));
}

function compileSources(config: StoredConfig, logger: Logger): AuthorizationSource[] {
  return config.authorization.sources.map((entry) => (entry.type === 'file' ? new FileSource(entry) : new HttpSource(entry, logger)));
}

async function readState(file: string): Promise<StoredConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`Cannot read embedded broker state file ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<StoredConfig> & { version?: number };
    if (parsed.version !== STATE_VERSION) throw new Error(`unsupported version ${String(parsed.version)}`);
    const fallback = defaultConfig('0.0.0.0:1883');
    // Re-check what is loaded, so a hand-edited file cannot install an invalid config.
    return {
      authentication: (parsed.authentication ?? []).map((config) => checkAuthenticator(config)),
      authorization: {
        sources: (parsed.authorization?.sources ?? fallback.authorization.sources).map((config) => checkAuthzSource(config)),
        settings: checkAuthzSettings(parsed.authorization?.settings ?? fallback.authorization.settings),
      },
      listeners: parsed.listeners ?? fallback.listeners,
      zone: parsed.zone ?? fallback.zone,
      retainer: parsed.retainer ?? fallback.retainer,
      bans: parsed.bans ?? [],
    };
  } catch (error) {
    throw new Error(`Embedded broker state file ${file} is invalid (${(error as Error).message}); fix or delete it`);
  }
}
