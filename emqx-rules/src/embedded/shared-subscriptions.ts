// Shared subscriptions (`$share/<group>/<filter>`, `$queue/<filter>`), which aedes lacks: each
// message matching a group's filter goes to one member of the group, chosen by the zone's
// `shared_subscription_strategy` (round_robin, random, sticky, hash_clientid, hash_topic; the
// others behave as round_robin on a single node). aedes keeps the literal `$share/...`
// subscription (which never matches a published topic); this module does the routing.
import { createHash } from 'node:crypto';
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import type { Logger } from '../logger.js';
import { parseSharedSubscription } from './access/topic-match.js';

interface Member {
  client: Client;
  qos: number;
}

interface Group {
  key: string;
  filter: string;
  members: Member[];
  next: number;
  sticky?: Client;
  deliver: (packet: AedesPublishPacket, callback: () => void) => void;
}

export class SharedSubscriptions {
  private readonly groups = new Map<string, Group>();

  constructor(
    private readonly broker: Aedes,
    private readonly strategy: () => string,
    private readonly logger: Logger,
  ) {}

  /** Registers `client` for a granted `$share/...` subscription (no-op for other topics). */
  add(client: Client, topic: string, qos: number): void {
    const shared = parseSharedSubscription(topic);
    if (!shared || shared === 'invalid') return;
    const key = `${shared.group}\u0000${shared.filter}`;
    let group = this.groups.get(key);
    if (!group) {
      const created: Group = { key, filter: shared.filter, members: [], next: 0, deliver: (packet, callback) => this.dispatch(created, packet, callback) };
      group = created;
      this.groups.set(key, created);
      this.broker.subscribe(shared.filter, created.deliver, () => undefined);
    }
    const existing = group.members.find((member) => member.client === client);
    if (existing) existing.qos = qos;
    else group.members.push({ client, qos });
  }

  remove(client: Client, topic: string): void {
    const shared = parseSharedSubscription(topic);
    if (!shared || shared === 'invalid') return;
    const group = this.groups.get(`${shared.group}\u0000${shared.filter}`);
    if (group) this.drop(group, client);
  }

  /** Removes the client from every group (it disconnected). */
  removeClient(client: Client): void {
    for (const group of [...this.groups.values()]) this.drop(group, client);
  }

  private drop(group: Group, client: Client): void {
    group.members = group.members.filter((member) => member.client !== client);
    if (group.sticky === client) group.sticky = undefined;
    if (group.members.length === 0) {
      this.groups.delete(group.key);
      this.broker.unsubscribe(group.filter, group.deliver, () => undefined);
    }
  }

  private pick(group: Group, packet: AedesPublishPacket): Member | undefined {
    const strategy = this.strategy();
    const members = group.members;
    if (strategy !== 'random' && strategy !== 'hash_clientid' && strategy !== 'hash_topic' && strategy !== 'sticky') {
      // round_robin over the live members, without building the live list for every message.
      let live = 0;
      for (let index = 0; index < members.length; index += 1) if (!(members[index] as Member).client.closed) live += 1;
      if (live === 0) return undefined;
      const position = group.next % live;
      group.next = (group.next + 1) % live;
      for (let index = 0, seen = 0; index < members.length; index += 1) {
        const member = members[index] as Member;
        if (member.client.closed) continue;
        if (seen === position) return member;
        seen += 1;
      }
      return undefined;
    }
    const live = members.filter((member) => !member.client.closed);
    if (live.length === 0) return undefined;
    const hashIndex = (text: string): number => createHash('md5').update(text).digest().readUInt32BE(0) % live.length;
    switch (strategy) {
      case 'random':
        return live[Math.floor(Math.random() * live.length)];
      case 'hash_clientid':
        return live[hashIndex(String((packet as { clientId?: string }).clientId ?? ''))];
      case 'hash_topic':
        return live[hashIndex(packet.topic)];
      default: {
        const current = live.find((member) => member.client === group.sticky);
        if (current) return current;
        const chosen = live[Math.floor(Math.random() * live.length)];
        group.sticky = chosen?.client;
        return chosen;
      }
    }
  }

  private dispatch(group: Group, packet: AedesPublishPacket, callback: () => void): void {
    // Like a leading wildcard, a shared filter never receives `$`-topics ($SYS/...) unless it names them.
    if (packet.topic.startsWith('$') && !group.filter.startsWith('$')) return callback();
    const member = this.pick(group, packet);
    if (!member) return callback();
    member.client.publish(
      { cmd: 'publish', topic: packet.topic, payload: packet.payload, qos: Math.min(packet.qos, member.qos) as 0 | 1 | 2, retain: false, dup: false },
      (error?: Error) => {
        if (error) this.logger.debug({ clientid: member.client.id, err: error.message }, 'shared subscription delivery failed');
        callback();
      },
    );
  }
}
