/**
 * Where load (issue 13) and billing (issue 14) meet, so neither imports the other:
 *  - the load component reads the effective MPS limit of a unit as the smallest of its own limit
 *    (instance default or the admin's per-user override) and every registered `UnitLimitSource`
 *    (billing registers one that returns the free tier for users past their grace period);
 *  - the load component attaches a `LoadUsageReader` over its ClickHouse rollups; billing meters
 *    usage through it.
 */
export interface UnitLimitSource {
  /** Shown as the reason of a limit (for example `billing`). */
  readonly name: string;
  /** MPS limit for every unit created by this user, or null when this source imposes none. */
  limitForUser(userUuid: string): Promise<number | null>;
  /**
   * Called once when the source is added: the source calls `changed(user)` whenever its answer
   * for that user changes (`null`: for any user), so the load component drops the effective
   * limits it caches at once instead of after their time to live.
   */
  watch?(changed: (userUuid: string | null) => void): void;
}

export interface UnitUsage {
  unitUuid: string;
  /** The unit's repo, null when the unit has none. */
  repoUuid: string | null;
  /** MQTT messages counted for the unit in the range (all of its topics). */
  messages: number;
  /** Highest per-minute average MPS in the range (for plans that bill peaks). */
  peakMps: number;
}

export interface LoadUsageReader {
  /** Usage of every unit the user created, over [from, to), from the load rollups. */
  userUsage(userUuid: string, from: Date, to: Date): Promise<UnitUsage[]>;
}

/** Decorated as `app.loadPorts`. */
export class LoadPorts {
  private readonly sources: UnitLimitSource[] = [];
  private readonly changeListeners = new Set<(userUuid: string | null) => void>();
  private reader: LoadUsageReader | undefined;

  addLimitSource(source: UnitLimitSource): void {
    this.sources.push(source);
    source.watch?.((userUuid) => this.limitChanged(userUuid));
  }

  /** Listens for changes of any source's limits (the load component's limit cache); returns the unsubscribe. */
  onLimitChange(listener: (userUuid: string | null) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** A source's limit for the user (`null`: for any user) changed. */
  limitChanged(userUuid: string | null): void {
    for (const listener of this.changeListeners) listener(userUuid);
  }

  get limitSources(): readonly UnitLimitSource[] {
    return this.sources;
  }

  /** The smallest limit any source imposes on the user's units, with the source's name; null when none does. */
  async externalLimitForUser(userUuid: string): Promise<{ mps: number; source: string } | null> {
    let best: { mps: number; source: string } | null = null;
    for (const s of this.sources) {
      const mps = await s.limitForUser(userUuid);
      if (mps !== null && (best === null || mps < best.mps)) best = { mps, source: s.name };
    }
    return best;
  }

  attachUsageReader(reader: LoadUsageReader | undefined): void {
    this.reader = reader;
  }

  get usage(): LoadUsageReader {
    if (!this.reader) throw new Error('load usage is not available: the load component is not running');
    return this.reader;
  }
}
