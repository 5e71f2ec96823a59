// Per-rule counters of the rule engine (EMQX's `rule_metrics`, reference/emqx-5.md §2.4) kept in
// one Float64Array, a fixed stride of slots per rule. With tens of thousands of counting rules
// every publish bumps the counters of a different rule; a flat array keeps that to one memory
// access (`matched` and `passed` share a cache line) instead of walking rule -> metrics ->
// counters objects scattered over the heap.

export const RULE_COUNTERS = [
  'matched',
  'passed',
  'failed',
  'failed.exception',
  'failed.no_result',
  'actions.total',
  'actions.success',
  'actions.failed',
  'actions.failed.out_of_service',
  'actions.failed.unknown',
  'actions.discarded',
] as const;

export type RuleCounter = (typeof RULE_COUNTERS)[number];

const STRIDE = RULE_COUNTERS.length;
const INDEX = Object.fromEntries(RULE_COUNTERS.map((name, index) => [name, index])) as Record<RuleCounter, number>;

export class RuleCounterStore {
  private data = new Float64Array(256 * STRIDE);
  private readonly free: number[] = [];
  private next = 0;

  /** A zeroed slot for a new rule. */
  allocate(): number {
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    if ((this.next + 1) * STRIDE > this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.next += 1;
    return this.next - 1;
  }

  /** Returns a slot (zeroed) for reuse. */
  release(slot: number): void {
    this.reset(slot);
    this.free.push(slot);
  }

  reset(slot: number): void {
    this.data.fill(0, slot * STRIDE, (slot + 1) * STRIDE);
  }

  add(slot: number, counter: RuleCounter, amount = 1): void {
    const index = slot * STRIDE + INDEX[counter];
    this.data[index] = (this.data[index] as number) + amount;
  }

  get(slot: number, counter: RuleCounter): number {
    return this.data[slot * STRIDE + INDEX[counter]] as number;
  }

  /** `matched`++ and `passed`++ for each slot: the whole evaluation of a counter-only rule. */
  countPassed(slots: readonly number[]): void {
    const data = this.data;
    for (let index = 0; index < slots.length; index += 1) {
      const base = (slots[index] as number) * STRIDE;
      data[base] = (data[base] as number) + 1;
      data[base + 1] = (data[base + 1] as number) + 1;
    }
  }

  /** A copy of a rule's counters, in `RULE_COUNTERS` order. */
  snapshot(slot: number): Float64Array {
    return this.data.slice(slot * STRIDE, (slot + 1) * STRIDE);
  }

  countPassedOne(slot: number): void {
    const data = this.data;
    const base = slot * STRIDE;
    data[base] = (data[base] as number) + 1;
    data[base + 1] = (data[base + 1] as number) + 1;
  }

  values(slot: number): Record<RuleCounter, number> {
    const result = {} as Record<RuleCounter, number>;
    RULE_COUNTERS.forEach((name, index) => (result[name] = this.data[slot * STRIDE + index] as number));
    return result;
  }
}
