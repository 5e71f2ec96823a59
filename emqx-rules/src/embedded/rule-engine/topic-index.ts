// Topic-filter index of the rule engine (EMQX `emqx_topic_index`, reference/emqx-5.md §8.2): a
// trie over filter levels, so finding the rules whose FROM matches a published topic costs
// about O(topic levels × matching wildcard branches), independent of how many rules exist.
// A topic starting with `$` is not matched by a leading `+` or `#` (MQTT rule, as EMQX).

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  /** Values of filters ending exactly here. */
  values: Set<T>;
  /** Values of filters ending with `/#` at this node (also match the parent level itself). */
  rest: Set<T>;
}

function node<T>(): TrieNode<T> {
  return { children: new Map(), values: new Set(), rest: new Set() };
}

export class TopicIndex<T> {
  private readonly root: TrieNode<T> = node();
  private count = 0;

  get size(): number {
    return this.count;
  }

  insert(filter: string, value: T): void {
    const words = filter.split('/');
    let current = this.root;
    for (let index = 0; index < words.length; index += 1) {
      const word = words[index] as string;
      if (word === '#' && index === words.length - 1) {
        if (!current.rest.has(value)) this.count += 1;
        current.rest.add(value);
        return;
      }
      let child = current.children.get(word);
      if (!child) {
        child = node();
        current.children.set(word, child);
      }
      current = child;
    }
    if (!current.values.has(value)) this.count += 1;
    current.values.add(value);
  }

  remove(filter: string, value: T): void {
    const words = filter.split('/');
    const trail: Array<[TrieNode<T>, string]> = [];
    let current = this.root;
    for (let index = 0; index < words.length; index += 1) {
      const word = words[index] as string;
      if (word === '#' && index === words.length - 1) {
        if (current.rest.delete(value)) this.count -= 1;
        this.prune(trail, current);
        return;
      }
      const child = current.children.get(word);
      if (!child) return;
      trail.push([current, word]);
      current = child;
    }
    if (current.values.delete(value)) this.count -= 1;
    this.prune(trail, current);
  }

  private prune(trail: Array<[TrieNode<T>, string]>, last: TrieNode<T>): void {
    let current = last;
    for (let index = trail.length - 1; index >= 0; index -= 1) {
      if (current.children.size > 0 || current.values.size > 0 || current.rest.size > 0) return;
      const [parent, word] = trail[index] as [TrieNode<T>, string];
      parent.children.delete(word);
      current = parent;
    }
  }

  /** Values of every filter matching `topic` (each value once). */
  match(topic: string): Set<T> {
    const words = topic.split('/');
    const found = new Set<T>();
    const dollar = topic.startsWith('$');
    const walk = (current: TrieNode<T>, index: number): void => {
      const wildcardAllowed = !(dollar && index === 0);
      if (wildcardAllowed) for (const value of current.rest) found.add(value);
      if (index === words.length) {
        for (const value of current.values) found.add(value);
        return;
      }
      const exact = current.children.get(words[index] as string);
      if (exact) walk(exact, index + 1);
      if (wildcardAllowed && words[index] !== '+') {
        const plus = current.children.get('+');
        if (plus) walk(plus, index + 1);
      }
    };
    walk(this.root, 0);
    return found;
  }
}
