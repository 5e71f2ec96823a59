// The `acl` an HTTP authenticator may return with `result: allow` (EMQX 5.8+, reference/emqx-5.md
// §5.2). New format: a list of rules checked before the authorization sources (no match falls
// through). Old format `{pub, sub, all}`: a whitelist (anything not listed is denied).
import type { AccessRequest, AccessSubject, Permission } from './acl-file.js';
import { topicMatches } from './topic-match.js';

interface ResponseAclRule {
  permission: Permission;
  action: 'publish' | 'subscribe' | 'all';
  topics: string[];
  qos?: number[];
  retain?: boolean;
}

export type ResponseAcl =
  | { format: 'rules'; rules: ResponseAclRule[] }
  | { format: 'whitelist'; pub: string[]; sub: string[]; all: string[] };

const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string');

/** Parses the `acl` field; throws on a malformed one (EMQX then refuses the login). */
export function parseResponseAcl(value: unknown): ResponseAcl {
  if (Array.isArray(value)) {
    const rules = value.map((entry, index): ResponseAclRule => {
      if (!entry || typeof entry !== 'object') throw new Error(`acl[${index}] is not an object`);
      const rule = entry as Record<string, unknown>;
      if (rule.permission !== 'allow' && rule.permission !== 'deny') throw new Error(`acl[${index}].permission must be allow or deny`);
      if (rule.action !== 'publish' && rule.action !== 'subscribe' && rule.action !== 'all') {
        throw new Error(`acl[${index}].action must be publish, subscribe or all`);
      }
      const topics = typeof rule.topic === 'string' ? [rule.topic] : isStringArray(rule.topics) ? rule.topics : undefined;
      if (!topics) throw new Error(`acl[${index}].topic must be a string`);
      const parsed: ResponseAclRule = { permission: rule.permission, action: rule.action, topics };
      if (rule.qos !== undefined) {
        const qos = Array.isArray(rule.qos) ? rule.qos : [rule.qos];
        if (!qos.every((item) => item === 0 || item === 1 || item === 2)) throw new Error(`acl[${index}].qos must list 0, 1 or 2`);
        parsed.qos = qos as number[];
      }
      if (rule.retain !== undefined && rule.retain !== 'all') {
        if (typeof rule.retain !== 'boolean') throw new Error(`acl[${index}].retain must be a boolean`);
        parsed.retain = rule.retain;
      }
      return parsed;
    });
    return { format: 'rules', rules };
  }
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const list = (key: string): string[] => {
      const entry = record[key];
      if (entry === undefined) return [];
      if (!isStringArray(entry)) throw new Error(`acl.${key} must be a list of topics`);
      return entry;
    };
    return { format: 'whitelist', pub: list('pub'), sub: list('sub'), all: list('all') };
  }
  throw new Error('acl must be a list of rules or an object {pub, sub, all}');
}

function topicAllowed(patterns: string[], subject: AccessSubject, topic: string): boolean {
  return patterns.some((pattern) => {
    const rendered = pattern.replace(/\$\{([^}]+)\}/g, (_whole, name: string) => {
      if (name === 'clientid') return subject.clientid;
      if (name === 'username') return subject.username ?? '';
      if (name.startsWith('client_attrs.')) return subject.clientAttrs[name.slice('client_attrs.'.length)] ?? '';
      return `\${${name}}`;
    });
    if (rendered.startsWith('eq ')) return rendered.slice(3) === topic;
    return topicMatches(topic, rendered);
  });
}

/** The ACL's decision, or undefined to continue with the cache and the sources. */
export function checkResponseAcl(acl: ResponseAcl, subject: AccessSubject, request: AccessRequest): Permission | undefined {
  if (acl.format === 'whitelist') {
    const lists = [...acl.all, ...(request.action === 'publish' ? acl.pub : acl.sub)];
    return topicAllowed(lists, subject, request.topic) ? 'allow' : 'deny';
  }
  for (const rule of acl.rules) {
    if (rule.action !== 'all' && rule.action !== request.action) continue;
    if (rule.qos && !rule.qos.includes(request.qos)) continue;
    if (rule.retain !== undefined && request.action === 'publish' && rule.retain !== request.retain) continue;
    if (topicAllowed(rule.topics, subject, request.topic)) return rule.permission;
  }
  return undefined;
}
