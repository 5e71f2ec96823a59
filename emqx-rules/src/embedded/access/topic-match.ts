// MQTT topic matching with EMQX's semantics (`emqx_topic:match/2`): `name` may itself be a
// filter (for subscribe checks); its `+`/`#` words are then compared as ordinary words, so a
// subscription `a/+` is covered by rule filters `a/+` and `a/#` but not by `a/b`. Names starting
// with `$` are not matched by a leading wildcard.

export function topicMatches(name: string, filter: string): boolean {
  if (name.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const nameWords = name.split('/');
  const filterWords = filter.split('/');
  let index = 0;
  for (; index < filterWords.length; index += 1) {
    const word = filterWords[index];
    if (word === '#') return index === filterWords.length - 1;
    if (index >= nameWords.length) return false;
    if (word === '+') continue;
    if (word !== nameWords[index]) return false;
  }
  return index === nameWords.length;
}

/** Validates a topic filter (used for `excludes` and ACL topics): no empty string, `#` last, wildcards alone in their level. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 65535 || filter.includes('\u0000')) return false;
  const words = filter.split('/');
  return words.every((word, index) => {
    if (word.includes('#')) return word === '#' && index === words.length - 1;
    if (word.includes('+')) return word === '+';
    return true;
  });
}

export function topicLevels(topic: string): number {
  // topic.split('/').length, without allocating the words (it runs for every publish).
  let levels = 1;
  for (let index = topic.indexOf('/'); index !== -1; index = topic.indexOf('/', index + 1)) levels += 1;
  return levels;
}

export interface SharedSubscription {
  group: string;
  filter: string;
}

/**
 * `$share/<group>/<filter>` (or `$queue/<filter>`, group `$queue`) → its parts; undefined for a
 * normal filter; 'invalid' for a malformed shared subscription (EMQX answers SUBACK 0x80/0x8F).
 */
export function parseSharedSubscription(topic: string): SharedSubscription | 'invalid' | undefined {
  if (topic.startsWith('$queue/')) {
    const filter = topic.slice('$queue/'.length);
    return isValidTopicFilter(filter) ? { group: '$queue', filter } : 'invalid';
  }
  if (!topic.startsWith('$share/')) return undefined;
  const rest = topic.slice('$share/'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return 'invalid';
  const group = rest.slice(0, slash);
  const filter = rest.slice(slash + 1);
  if (/[+#]/.test(group) || !isValidTopicFilter(filter) || filter.startsWith('$share/')) return 'invalid';
  return { group, filter };
}
