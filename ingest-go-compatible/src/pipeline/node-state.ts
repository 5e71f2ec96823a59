/**
 * What the pipeline remembers per unit node between messages (in memory, per process).
 *
 * Unlike the reference, `lastAcceptedRaw` is the value the filters saw (the payload, or the
 * value selected by `data_source`) before transformations: the reference compared the new
 * raw payload with the previous *transformed* value, so `last_unique_check` never fired when
 * a multiplication, rounding or slice changed the text (§8.1.6). It starts as null, so the
 * first message is never a duplicate (the reference started from "", dropping an empty
 * first payload under `last_unique_check`).
 */
export interface NodeState {
  /** Receive time of the last accepted message (ms), for `max_rate`. */
  lastAcceptedAtMs: number | null;
  /** The last accepted value before transformations, for `last_unique_check`. */
  lastAcceptedRaw: string | null;
}

export function createNodeState(): NodeState {
  return { lastAcceptedAtMs: null, lastAcceptedRaw: null };
}
