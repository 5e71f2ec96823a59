/**
 * The admin's allow and deny rules for repository hosts (issue 10): a rule's domain matches the
 * host itself and its subdomains (`example.com` matches `git.example.com`); deny wins; when any
 * allow rule exists, only allowed hosts may be registered. Allowed hosts, and the operator's
 * PU_REGISTRY_ALLOWED_PRIVATE_HOSTS, may resolve to private addresses. Rules are cached for a few
 * seconds per process (other replicas see a change within that time).
 */
import type { Pool } from 'pg';
import { RepositoryRegistryError, ValidationError } from '../errors.js';

export type DomainRule = 'allow' | 'deny';

export interface DomainRuleRow {
  domain: string;
  rule: DomainRule;
  creator_uuid: string | null;
  create_datetime: Date;
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const CACHE_MS = 5000;

export function normalizeDomain(raw: string): string {
  const domain = raw.trim().toLowerCase().replace(/\.$/, '');
  if (!DOMAIN.test(domain) && !/^\d{1,3}(\.\d{1,3}){3}$/.test(domain)) throw new ValidationError(`"${raw}" is not a domain name (e.g. github.com, git.example.org)`);
  return domain;
}

function matches(host: string, domain: string): boolean {
  return host === domain || host.endsWith(`.${domain}`);
}

export class DomainRules {
  #cache: { at: number; rows: DomainRuleRow[] } | undefined;

  constructor(
    private readonly pg: Pool,
    /** Hosts the operator trusts by configuration (PU_REGISTRY_ALLOWED_PRIVATE_HOSTS). */
    private readonly configuredTrusted: readonly string[],
  ) {}

  async list(): Promise<DomainRuleRow[]> {
    if (this.#cache && Date.now() - this.#cache.at < CACHE_MS) return this.#cache.rows;
    const { rows } = await this.pg.query<DomainRuleRow>('SELECT domain, rule, creator_uuid, create_datetime FROM repository_domain_rules ORDER BY domain');
    this.#cache = { at: Date.now(), rows };
    return rows;
  }

  async set(domain: string, rule: DomainRule, creatorUuid: string): Promise<DomainRuleRow> {
    const name = normalizeDomain(domain);
    const { rows } = await this.pg.query<DomainRuleRow>(
      `INSERT INTO repository_domain_rules (domain, rule, creator_uuid) VALUES ($1, $2, $3)
       ON CONFLICT (domain) DO UPDATE SET rule = EXCLUDED.rule, creator_uuid = EXCLUDED.creator_uuid, create_datetime = (now() AT TIME ZONE 'utc')
       RETURNING domain, rule, creator_uuid, create_datetime`,
      [name, rule, creatorUuid],
    );
    this.#cache = undefined;
    return rows[0]!;
  }

  async remove(domain: string): Promise<boolean> {
    const { rowCount } = await this.pg.query('DELETE FROM repository_domain_rules WHERE domain = $1', [normalizeDomain(domain)]);
    this.#cache = undefined;
    return (rowCount ?? 0) > 0;
  }

  /** Throws when users may not register a repository on `host`. */
  async assertRegistrable(host: string): Promise<void> {
    const name = host.toLowerCase();
    const rows = await this.list();
    if (rows.some((r) => r.rule === 'deny' && matches(name, r.domain))) throw new RepositoryRegistryError(`Repositories on ${name} are not allowed on this instance`);
    const allows = rows.filter((r) => r.rule === 'allow');
    if (allows.length > 0 && !allows.some((r) => matches(name, r.domain))) {
      throw new RepositoryRegistryError(`Repositories on ${name} are not allowed on this instance (allowed: ${allows.map((r) => r.domain).join(', ')})`);
    }
  }

  /** Hosts that may resolve to private addresses: configured ones and allow rules (their subdomains too, via `isTrusted`). */
  async trusted(): Promise<{ exact: ReadonlySet<string>; domains: readonly string[] }> {
    const rows = await this.list();
    return { exact: new Set(this.configuredTrusted.map((h) => h.toLowerCase())), domains: rows.filter((r) => r.rule === 'allow').map((r) => r.domain) };
  }
}
