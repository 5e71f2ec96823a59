// The `file` authorization source: acl.conf text made of Erlang terms, one rule per `.`
// (EMQX 5 `emqx_authz_rule`). Supported subset:
//   {allow | deny, all}.
//   {allow | deny, Who, Action, Topics}.
//   Who    = all | {user|username, "u"} | {username, {re, "regex"}} | {client|clientid, "c"}
//          | {clientid, {re, "regex"}} | {ipaddr, "ip or cidr"} | {ipaddrs, ["...", ...]}
//          | {'and', [Who, ...]} | {'or', [Who, ...]}
//   Action = publish | subscribe | all | {publish|subscribe|all, [{qos, 0..2 | [..]}, {retain, true|false|all}]}
//   Topics = ["filter", {eq, "exact"}, ...]   placeholders ${clientid}, ${username}
import { BlockList, isIP } from 'node:net';
import { topicMatches } from './topic-match.js';

export type Permission = 'allow' | 'deny';
export type AuthzAction = 'publish' | 'subscribe';

export interface AccessSubject {
  clientid: string;
  username: string | null;
  peerhost: string;
  clientAttrs: Record<string, string>;
}

export interface AccessRequest {
  action: AuthzAction;
  topic: string;
  qos: number;
  retain: boolean;
}

type Term =
  | { kind: 'atom'; value: string }
  | { kind: 'string'; value: string }
  | { kind: 'int'; value: number }
  | { kind: 'list'; items: Term[] }
  | { kind: 'tuple'; items: Term[] };

export class AclSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AclSyntaxError';
  }
}

// ---------------------------------------------------------------------------------------------
// Reader

class TermReader {
  private position = 0;
  constructor(private readonly text: string) {}

  private skipSpace(): void {
    while (this.position < this.text.length) {
      const char = this.text[this.position] as string;
      if (char === '%') {
        while (this.position < this.text.length && this.text[this.position] !== '\n') this.position += 1;
      } else if (/\s/.test(char)) {
        this.position += 1;
      } else {
        return;
      }
    }
  }

  private where(): string {
    const line = this.text.slice(0, this.position).split('\n').length;
    return `line ${line}`;
  }

  atEnd(): boolean {
    this.skipSpace();
    return this.position >= this.text.length;
  }

  expect(char: string): void {
    this.skipSpace();
    if (this.text[this.position] !== char) {
      throw new AclSyntaxError(`expected "${char}" at ${this.where()}, found ${JSON.stringify(this.text.slice(this.position, this.position + 12) || 'end of text')}`);
    }
    this.position += 1;
  }

  readTerm(): Term {
    this.skipSpace();
    const char = this.text[this.position];
    if (char === undefined) throw new AclSyntaxError(`unexpected end of text at ${this.where()}`);
    if (char === '{' || char === '[') {
      const close = char === '{' ? '}' : ']';
      this.position += 1;
      const items: Term[] = [];
      this.skipSpace();
      if (this.text[this.position] === close) {
        this.position += 1;
      } else {
        for (;;) {
          items.push(this.readTerm());
          this.skipSpace();
          const next = this.text[this.position];
          this.position += 1;
          if (next === close) break;
          if (next !== ',') throw new AclSyntaxError(`expected "," or "${close}" at ${this.where()}`);
        }
      }
      return char === '{' ? { kind: 'tuple', items } : { kind: 'list', items };
    }
    if (char === '"') return { kind: 'string', value: this.readQuoted('"') };
    if (char === "'") return { kind: 'atom', value: this.readQuoted("'") };
    const number = /^-?\d+/.exec(this.text.slice(this.position));
    if (number) {
      this.position += number[0].length;
      return { kind: 'int', value: Number(number[0]) };
    }
    const atom = /^[a-z][A-Za-z0-9_@]*/.exec(this.text.slice(this.position));
    if (atom) {
      this.position += atom[0].length;
      return { kind: 'atom', value: atom[0] };
    }
    throw new AclSyntaxError(`unexpected ${JSON.stringify(char)} at ${this.where()}`);
  }

  private readQuoted(quote: string): string {
    this.position += 1;
    let value = '';
    while (this.position < this.text.length) {
      const char = this.text[this.position] as string;
      this.position += 1;
      if (char === quote) return value;
      if (char === '\\') {
        const escaped = this.text[this.position] ?? '';
        this.position += 1;
        value += escaped === 'n' ? '\n' : escaped === 't' ? '\t' : escaped;
      } else {
        value += char;
      }
    }
    throw new AclSyntaxError(`unterminated ${quote === '"' ? 'string' : 'quoted atom'} at ${this.where()}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Compiled rules

type WhoMatcher = (subject: AccessSubject) => boolean;

interface ActionMatcher {
  action: 'publish' | 'subscribe' | 'all';
  qos?: number[];
  retain?: boolean;
}

interface TopicMatcher {
  exact: boolean;
  pattern: string;
}

export interface AclRule {
  permission: Permission;
  who: WhoMatcher;
  action: ActionMatcher;
  /** undefined = every topic (the `{allow|deny, all}` form). */
  topics?: TopicMatcher[];
}

const describeTerm = (term: Term): string => {
  switch (term.kind) {
    case 'atom':
      return term.value;
    case 'string':
      return JSON.stringify(term.value);
    case 'int':
      return String(term.value);
    case 'list':
      return `[${term.items.map(describeTerm).join(', ')}]`;
    case 'tuple':
      return `{${term.items.map(describeTerm).join(', ')}}`;
  }
};

function asString(term: Term | undefined, what: string): string {
  if (term?.kind === 'string') return term.value;
  throw new AclSyntaxError(`${what} must be a "string", got ${term ? describeTerm(term) : 'nothing'}`);
}

function compileRegex(source: string): RegExp {
  try {
    return new RegExp(source);
  } catch (error) {
    throw new AclSyntaxError(`invalid regular expression ${JSON.stringify(source)}: ${(error as Error).message}`);
  }
}

function normaliseIp(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function addressMatcher(entries: string[]): WhoMatcher {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/');
    const family = isIP(address ?? '');
    if (!address || family === 0) throw new AclSyntaxError(`invalid IP address ${JSON.stringify(entry)}`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) {
      list.addAddress(address, type);
    } else {
      const bits = Number(prefix);
      if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) throw new AclSyntaxError(`invalid CIDR ${JSON.stringify(entry)}`);
      list.addSubnet(address, bits, type);
    }
  }
  return (subject) => {
    const host = normaliseIp(subject.peerhost);
    const family = isIP(host);
    return family !== 0 && list.check(host, family === 4 ? 'ipv4' : 'ipv6');
  };
}

function compileWho(term: Term): WhoMatcher {
  if (term.kind === 'atom' && term.value === 'all') return () => true;
  if (term.kind !== 'tuple' || term.items.length !== 2 || term.items[0]?.kind !== 'atom') {
    throw new AclSyntaxError(`unsupported "who" ${describeTerm(term)}`);
  }
  const kind = term.items[0].value;
  const value = term.items[1] as Term;
  switch (kind) {
    case 'user':
    case 'username': {
      if (value.kind === 'tuple' && value.items[0]?.kind === 'atom' && value.items[0].value === 're') {
        const regex = compileRegex(asString(value.items[1], 'username regex'));
        return (subject) => subject.username !== null && regex.test(subject.username);
      }
      const username = asString(value, 'username');
      return (subject) => subject.username === username;
    }
    case 'client':
    case 'clientid': {
      if (value.kind === 'tuple' && value.items[0]?.kind === 'atom' && value.items[0].value === 're') {
        const regex = compileRegex(asString(value.items[1], 'clientid regex'));
        return (subject) => regex.test(subject.clientid);
      }
      const clientid = asString(value, 'clientid');
      return (subject) => subject.clientid === clientid;
    }
    case 'ipaddr':
      return addressMatcher([asString(value, 'ipaddr')]);
    case 'ipaddrs': {
      if (value.kind !== 'list') throw new AclSyntaxError('ipaddrs must be a list of strings');
      return addressMatcher(value.items.map((item) => asString(item, 'ipaddrs entry')));
    }
    case 'and':
    case 'or': {
      if (value.kind !== 'list' || value.items.length === 0) throw new AclSyntaxError(`'${kind}' needs a non-empty list`);
      const parts = value.items.map(compileWho);
      return kind === 'and' ? (subject) => parts.every((part) => part(subject)) : (subject) => parts.some((part) => part(subject));
    }
    default:
      throw new AclSyntaxError(`unsupported "who" ${describeTerm(term)}`);
  }
}

function compileAction(term: Term): ActionMatcher {
  const name = (candidate: Term | undefined): 'publish' | 'subscribe' | 'all' => {
    if (candidate?.kind === 'atom' && ['publish', 'subscribe', 'all'].includes(candidate.value)) {
      return candidate.value as 'publish' | 'subscribe' | 'all';
    }
    throw new AclSyntaxError(`action must be publish, subscribe or all, got ${candidate ? describeTerm(candidate) : 'nothing'}`);
  };
  if (term.kind === 'atom') return { action: name(term) };
  if (term.kind === 'tuple' && term.items.length === 2 && term.items[1]?.kind === 'list') {
    const matcher: ActionMatcher = { action: name(term.items[0]) };
    for (const option of term.items[1].items) {
      if (option.kind !== 'tuple' || option.items.length !== 2 || option.items[0]?.kind !== 'atom') {
        throw new AclSyntaxError(`unsupported action option ${describeTerm(option)}`);
      }
      const key = option.items[0].value;
      const value = option.items[1] as Term;
      if (key === 'qos') {
        const values = value.kind === 'list' ? value.items : [value];
        matcher.qos = values.map((item) => {
          if (item.kind !== 'int' || item.value < 0 || item.value > 2) throw new AclSyntaxError(`qos must be 0, 1 or 2, got ${describeTerm(item)}`);
          return item.value;
        });
      } else if (key === 'retain') {
        if (value.kind !== 'atom' || !['true', 'false', 'all'].includes(value.value)) throw new AclSyntaxError('retain must be true, false or all');
        if (value.value !== 'all') matcher.retain = value.value === 'true';
      } else {
        throw new AclSyntaxError(`unsupported action option ${key}`);
      }
    }
    return matcher;
  }
  throw new AclSyntaxError(`unsupported action ${describeTerm(term)}`);
}

function compileTopics(term: Term): TopicMatcher[] {
  if (term.kind !== 'list') throw new AclSyntaxError(`topics must be a list, got ${describeTerm(term)}`);
  return term.items.map((item) => {
    if (item.kind === 'string') return { exact: false, pattern: item.value };
    if (item.kind === 'tuple' && item.items.length === 2 && item.items[0]?.kind === 'atom' && item.items[0].value === 'eq') {
      return { exact: true, pattern: asString(item.items[1], 'eq topic') };
    }
    throw new AclSyntaxError(`unsupported topic ${describeTerm(item)}`);
  });
}

function compileRule(term: Term): AclRule {
  if (term.kind !== 'tuple') throw new AclSyntaxError(`a rule must be a tuple, got ${describeTerm(term)}`);
  const [permissionTerm, ...rest] = term.items;
  if (permissionTerm?.kind !== 'atom' || (permissionTerm.value !== 'allow' && permissionTerm.value !== 'deny')) {
    throw new AclSyntaxError(`a rule must start with allow or deny: ${describeTerm(term)}`);
  }
  const permission = permissionTerm.value;
  if (rest.length === 1 && rest[0]?.kind === 'atom' && rest[0].value === 'all') {
    return { permission, who: () => true, action: { action: 'all' } };
  }
  if (rest.length !== 3) throw new AclSyntaxError(`a rule needs {Permission, Who, Action, Topics}: ${describeTerm(term)}`);
  return {
    permission,
    who: compileWho(rest[0] as Term),
    action: compileAction(rest[1] as Term),
    topics: compileTopics(rest[2] as Term),
  };
}

/** Parses acl.conf text; throws `AclSyntaxError` with a line number on bad input. */
export function parseAclRules(text: string): AclRule[] {
  const reader = new TermReader(text);
  const rules: AclRule[] = [];
  while (!reader.atEnd()) {
    const term = reader.readTerm();
    reader.expect('.');
    rules.push(compileRule(term));
  }
  return rules;
}

function renderTopic(pattern: string, subject: AccessSubject): string | undefined {
  let missing = false;
  const rendered = pattern.replace(/\$\{([^}]+)\}|%([cu])/g, (_whole, name: string | undefined, legacy: string | undefined) => {
    const key = name ?? (legacy === 'c' ? 'clientid' : 'username');
    let value: string | undefined;
    if (key === 'clientid') value = subject.clientid;
    else if (key === 'username') value = subject.username ?? undefined;
    else if (key.startsWith('client_attrs.')) value = subject.clientAttrs[key.slice('client_attrs.'.length)];
    if (value === undefined || value === '') missing = true;
    return value ?? '';
  });
  return missing ? undefined : rendered;
}

function actionMatches(matcher: ActionMatcher, request: AccessRequest): boolean {
  if (matcher.action !== 'all' && matcher.action !== request.action) return false;
  if (matcher.qos && !matcher.qos.includes(request.qos)) return false;
  if (matcher.retain !== undefined && request.action === 'publish' && matcher.retain !== request.retain) return false;
  return true;
}

/** First matching rule's permission, or undefined (no match). */
export function evaluateAclRules(rules: AclRule[], subject: AccessSubject, request: AccessRequest): Permission | undefined {
  for (const rule of rules) {
    if (!rule.who(subject) || !actionMatches(rule.action, request)) continue;
    if (rule.topics === undefined) return rule.permission;
    for (const topic of rule.topics) {
      const pattern = renderTopic(topic.pattern, subject);
      if (pattern === undefined) continue;
      if (topic.exact ? request.topic === pattern : topicMatches(request.topic, pattern)) return rule.permission;
    }
  }
  return undefined;
}
