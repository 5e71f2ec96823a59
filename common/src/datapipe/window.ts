/**
 * Aggregation windows (§3.9): tumbling, half-open `[start, start + size)`, aligned to
 * multiples of the size counted from the Unix epoch (every allowed size divides 86400, so
 * windows are aligned to UTC midnight). A message exactly on a boundary opens the next window.
 */
export interface AggregationWindowBounds {
  startMs: number;
  endMs: number;
}

export function aggregationWindow(atMs: number, sizeSeconds: number): AggregationWindowBounds {
  const sizeMs = sizeSeconds * 1000;
  const startMs = Math.floor(atMs / sizeMs) * sizeMs;
  return { startMs, endMs: startMs + sizeMs };
}
