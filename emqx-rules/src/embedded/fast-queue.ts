// A FIFO with O(1) `push`/`shift`, shaped like the array subset mqemitter uses for its backlog
// (`_messageQueue`, `_messageCallbacks`: push, shift, length). mqemitter's arrays become
// O(backlog) per `shift` once the backlog outgrows V8's in-place left trim (large-object space),
// which under load turned the broker's routing into a quadratic loop; this ring buffer does not.
export class FastQueue<T> {
  private items: Array<T | undefined> = new Array<T | undefined>(1024);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): number {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count += 1;
    return this.count;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count -= 1;
    return item;
  }

  private grow(): void {
    const next = new Array<T | undefined>(this.items.length * 2);
    for (let index = 0; index < this.count; index += 1) next[index] = this.items[(this.head + index) & (this.items.length - 1)];
    this.items = next;
    this.head = 0;
  }
}

/** Swaps mqemitter's backlog arrays for FastQueues (no-op if the emitter has none or is busy). */
export function useFastBacklog(mq: unknown): boolean {
  const emitter = mq as { _messageQueue?: unknown; _messageCallbacks?: unknown };
  if (!Array.isArray(emitter._messageQueue) || !Array.isArray(emitter._messageCallbacks)) return false;
  if (emitter._messageQueue.length > 0 || emitter._messageCallbacks.length > 0) return false;
  emitter._messageQueue = new FastQueue<unknown>();
  emitter._messageCallbacks = new FastQueue<unknown>();
  return true;
}
